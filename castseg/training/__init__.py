"""castseg.training."""
