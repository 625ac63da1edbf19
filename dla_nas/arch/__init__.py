"""Architectures: genomes, their building blocks, the builder, the official zoo, cost counting
and the hand-designed baselines."""
