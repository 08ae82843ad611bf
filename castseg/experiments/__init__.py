"""Experiments of several runs: one config over seeds, and ablation grids over config values."""
