"""What a robot provides to the bridge: its spec and five methods (numpy only, no JAX).

Implement `RobotInterface` for your hardware (see `hardware/robot/examples.py`); `RobotServer` runs it at a
fixed rate and talks the protocol of docs/protocol.md.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np

from hardware.protocol import DTYPES


@dataclasses.dataclass(frozen=True)
class RobotSpec:
    """A robot's declared interface; every state and action on the wire is checked against it."""

    name: str  # e.g. "pendulum-sim" or "ur5e-lab2"
    obs_shape: tuple[int, ...]  # observation shape, e.g. (3,)
    action_low: tuple[float, ...]  # per-dimension lower action bound (policy units, usually -1)
    action_high: tuple[float, ...]  # per-dimension upper action bound (usually +1)
    obs_dtype: str = "float32"
    action_dtype: str = "float32"
    rate_hz: float = 50.0  # nominal control rate, Hz
    params: tuple[tuple[str, float], ...] = ()  # settable parameters and their defaults
    cost_budget: float = 0.0  # allowed cumulative safety cost per episode (0: unconstrained)

    def __post_init__(self) -> None:
        if not self.obs_shape or any(int(d) < 1 for d in self.obs_shape):
            raise ValueError(f"obs_shape must be a non-empty tuple of positive ints, got {self.obs_shape}")
        if len(self.action_low) != len(self.action_high) or not self.action_low:
            raise ValueError("action_low and action_high must be non-empty and of equal length")
        if any(lo > hi for lo, hi in zip(self.action_low, self.action_high, strict=False)):
            raise ValueError(f"action_low must be <= action_high, got {self.action_low} > {self.action_high}")
        for field in ("obs_dtype", "action_dtype"):
            if getattr(self, field) not in ("float32", "float64"):
                raise ValueError(f"{field} must be float32 or float64, got {getattr(self, field)}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")

    @property
    def action_shape(self) -> tuple[int, ...]:
        return (len(self.action_low),)

    @property
    def low(self) -> np.ndarray:
        return np.asarray(self.action_low, dtype=DTYPES[self.action_dtype])

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.action_high, dtype=DTYPES[self.action_dtype])

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "obs_shape": list(self.obs_shape),
            "obs_dtype": self.obs_dtype,
            "action_shape": list(self.action_shape),
            "action_dtype": self.action_dtype,
            "action_low": [float(x) for x in self.action_low],
            "action_high": [float(x) for x in self.action_high],
            "rate_hz": float(self.rate_hz),
            "params": {k: float(v) for k, v in self.params},
            "cost_budget": float(self.cost_budget),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RobotSpec:
        try:
            return cls(
                name=str(data["name"]),
                obs_shape=tuple(int(d) for d in data["obs_shape"]),
                action_low=tuple(float(x) for x in data["action_low"]),
                action_high=tuple(float(x) for x in data["action_high"]),
                obs_dtype=data["obs_dtype"],
                action_dtype=data["action_dtype"],
                rate_hz=float(data["rate_hz"]),
                params=tuple((str(k), float(v)) for k, v in data["params"].items()),
                cost_budget=float(data["cost_budget"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"invalid robot spec in hello reply: {err}") from None


@dataclasses.dataclass(frozen=True)
class RobotState:
    """One reading: observation plus the step's reward and safety cost, as the robot measures them."""

    obs: np.ndarray  # [*obs_shape]
    reward: float = 0.0  # reward of the last period (0 if the robot does not compute one)
    cost: float = 0.0  # safety cost of the last period, >= 0
    done: bool = False  # the episode ended (time limit, task end, or the robot's own safety stop)


class RobotInterface(abc.ABC):
    """A robot the server can drive. Methods are called from the server's control loop, one at a time."""

    @abc.abstractmethod
    def spec(self) -> RobotSpec:
        """The robot's declared observation/action interface."""

    @abc.abstractmethod
    def read_state(self) -> RobotState:
        """Read sensors now (called once per period, right after `apply_action`)."""

    @abc.abstractmethod
    def apply_action(self, action: np.ndarray) -> None:
        """Command `action` [action_dim] (already validated: finite, within bounds) for one period."""

    @abc.abstractmethod
    def safe_action(self) -> np.ndarray:
        """The action that is always safe to apply (e.g. zero torque, brake); used on any fault."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> RobotState:
        """Bring the robot to an initial state (may block) and return the first reading."""

    def idle(self) -> None:
        """Called each period while no episode runs; default: keep commanding the safe action.

        A simulator may override this to pause time instead."""
        self.apply_action(self.safe_action())

    def set_parameter(self, name: str, value: float) -> None:
        """Set one of the parameters declared in `spec().params` (default: none are settable)."""
        raise KeyError(name)

    def close(self) -> None:  # noqa: B027 (optional hook: a robot with nothing to release keeps this no-op)
        """Release hardware (called once when the server stops)."""
