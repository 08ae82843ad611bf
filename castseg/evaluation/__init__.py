"""castseg.evaluation."""
