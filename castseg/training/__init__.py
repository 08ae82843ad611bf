"""Training one stage: the Lightning module, its objective and optimiser, the trainer that fits
it, step batches, host-sync checks, progress and the metrics log."""
