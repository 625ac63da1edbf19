"""What a finished run is read for: Pareto fronts, plots, exported configs, and confirmation
on the test split."""
