"""On-board ONNX policy: runs an exported policy (saferl.export) inside the robot server, no JAX.

For control rates the network cannot give: `start` with mode "onboard" makes the server compute each
action itself from the latest observation, under the same checks (finite, in bounds) and safe action.
`load_onboard` takes an exported .onnx file (`OnboardPolicy`) or a shielded policy's directory
(`hardware.robot.onboard_shield.OnboardShieldedPolicy`); the server feeds either the cost of every step.
"""

from __future__ import annotations

import pathlib
from typing import Any, Protocol

import numpy as np

from hardware.robot.interface import RobotSpec


class OnboardRunner(Protocol):
    """What the server needs of an on-board policy."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The action [act_dim] for this step from observation `obs` [*obs_shape]."""

    def reset(self) -> None:
        """A new episode begins (the robot was reset)."""

    def observe_cost(self, cost: float) -> None:
        """The safety cost (≥ 0) the robot measured for the step it just applied, in any mode."""

    def shield_status(self) -> dict[str, Any] | None:
        """The shield's episode counters for `status` (None: no shield)."""


def open_session(path: str | pathlib.Path, what: str = "ONNX policy") -> Any:
    """An onnxruntime session for the graph at `path` on one CPU thread; ValueError if missing or unloadable."""
    import onnxruntime as ort

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"on-board {what} file {path} not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the control loop owns this core; no thread pool wake-ups
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only (exported graphs keep unused initialisers: a warning each)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 — onnxruntime raises its own exception types
        raise ValueError(f"cannot load {what} {path}: {err}") from None


def load_onboard(path: str | pathlib.Path, spec: RobotSpec) -> OnboardRunner:
    """The on-board policy at `path`: a directory (a shielded policy, `saferl.export.shielded`) or an .onnx file."""
    if pathlib.Path(path).is_dir():
        from hardware.robot.onboard_shield import OnboardShieldedPolicy

        return OnboardShieldedPolicy(path, spec)
    return OnboardPolicy(path, spec)


class OnboardPolicy:
    """`policy(obs [*obs_shape]) -> action [act_dim]` (float32) with onnxruntime on one CPU thread."""

    def __init__(self, path: str | pathlib.Path, spec: RobotSpec):
        path = pathlib.Path(path)
        self.session = open_session(path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        obs_dim = int(np.prod(spec.obs_shape))
        declared = inputs[0].shape[-1]
        if isinstance(declared, int) and declared != obs_dim:
            raise ValueError(f"{path} expects observations of size {declared}, the robot gives {obs_dim}")
        self.obs_dim, self.action_shape = obs_dim, spec.action_shape
        action = self(np.zeros(obs_dim, np.float32))  # warm up and check the output shape once
        if action.shape != self.action_shape:
            raise ValueError(f"{path} gives actions of shape {action.shape}, the robot takes {self.action_shape}")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        batch = np.asarray(obs, np.float32).reshape(1, self.obs_dim)
        return self.session.run([self.output_name], {self.input_name: batch})[0][0]

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def observe_cost(self, cost: float) -> None:
        """Stateless: the robot's cost does not change its actions."""

    def shield_status(self) -> None:
        return None

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)
