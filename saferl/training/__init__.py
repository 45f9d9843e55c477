"""Runs: run directories, the `TrainContext` every algorithm trains against, logging, checkpoints, plots."""

from saferl.training.context import TrainContext, check_finite

__all__ = ["TrainContext", "check_finite"]
