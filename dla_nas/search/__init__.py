"""Search: the space, the proxy evaluator, the backend-neutral trial core, and the Optuna and
Ray Tune backends that schedule trials."""
