"""castseg: compact instance-segmentation experts distilled from vision foundation models (CAST)."""

__version__ = "0.1.0"
