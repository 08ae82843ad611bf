"""castseg.models."""
