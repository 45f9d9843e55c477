"""Robotic ultrasound: a procedural body phantom, a JAX B-mode renderer and MJX probe-scanning tasks."""

from envs.ultrasound.coverage import CoverageConfig, UsCoverage
from envs.ultrasound.navigate import NavigateConfig, UsNavigate
from envs.ultrasound.probe import ProbeConfig, ProbeEnv
from envs.ultrasound.surgery import SurgeryConfig, UsSurgery

__all__ = [
    "CoverageConfig",
    "NavigateConfig",
    "ProbeConfig",
    "ProbeEnv",
    "SurgeryConfig",
    "UsCoverage",
    "UsNavigate",
    "UsSurgery",
]
