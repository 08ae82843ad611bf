"""castseg.data."""
