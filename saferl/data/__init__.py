"""Transitions, the fixed-capacity jit-friendly replay buffer, and recorded robot episodes as training data.

`saferl.data.recordings` is numpy-only (the robot side reads it without JAX), so the buffer names below
are imported lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReplayBuffer", "Transition"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from saferl.data import buffer

        return getattr(buffer, name)
    raise AttributeError(f"module 'saferl.data' has no attribute {name!r}")
