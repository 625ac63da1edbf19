"""Pareto early stopping as a Ray Tune ``TrialScheduler``: the rule of ``early_stopping.py``,
with the rung entries in the run's ``rungs.jsonl`` as in the Optuna backend."""

from __future__ import annotations

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .early_stopping import ParetoStopping


class ParetoScheduler(FIFOScheduler):
    """Stops a trial at a rung when ``ParetoStopping`` says so; runs trials in FIFO order."""

    def __init__(self, stopping: ParetoStopping) -> None:
        super().__init__()
        self.stopping = stopping

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch = result.get("epoch")  # only training trials report an epoch
        if epoch is None or result.get("status") != "ok":
            return TrialScheduler.CONTINUE
        number = int(trial.config["dla"]["number"])
        metrics = {m: result[m] for m, _ in self.stopping.objectives}
        if self.stopping.stop_at(number, int(epoch), metrics):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
