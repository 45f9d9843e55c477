"""saferl: safe and model-based reinforcement learning on robots, in JAX."""

__version__ = "0.1.0"
