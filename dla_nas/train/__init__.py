"""Training one network: the trainer, its checkpoints, and the classification metrics."""
