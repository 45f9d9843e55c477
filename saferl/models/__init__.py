"""Probabilistic ensemble dynamics models: training, prediction, uncertainty and calibration."""

from saferl.models.ensemble import EnsembleConfig, EnsembleState, fit, init, predict, predict_per_member
from saferl.models.fitting import FitMetrics

__all__ = ["EnsembleConfig", "EnsembleState", "FitMetrics", "fit", "init", "predict", "predict_per_member"]
