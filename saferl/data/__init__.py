"""Transitions and the fixed-capacity, jit-friendly replay buffer."""

from saferl.data.buffer import ReplayBuffer, Transition

__all__ = ["ReplayBuffer", "Transition"]
