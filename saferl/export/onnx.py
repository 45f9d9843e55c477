"""Export a policy's deterministic MLP map `apply(params, obs)` to ONNX (via jax2onnx) for on-board use.

The exported graph takes `obs` [B, obs_dim] float32 and returns `action` [B, act_dim] float32 (for brax
PPO/SAC networks: tanh of the Gaussian mean, observation normaliser included); params are baked in as
constants. Run it with onnxruntime (`hardware.robot.onboard.OnboardPolicy`) — no JAX on the robot.
The graph is memoryless and acts every step, so only policies without carry memory and with
`action_repeat` 1 are exported (`apply` is their deterministic map; the robot tracks the cost itself).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saferl.data import observations
from saferl.errors import UserError

OBS_INPUT, ACTION_OUTPUT = "obs", "action"


def export_apply_onnx(
    apply: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    observation_size: int,
    path: str | pathlib.Path,
    metadata: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Export `obs [B, obs_dim] -> apply(params, obs)` to `path` (.onnx); `metadata` goes into the model."""
    params = jax.tree.map(jnp.asarray, params)

    def deterministic_action(obs: jax.Array) -> jax.Array:
        return apply(params, obs).astype(jnp.float32)

    return export_function_onnx(
        deterministic_action, {OBS_INPUT: ("B", observation_size)}, [ACTION_OUTPUT], path, metadata
    )


def export_function_onnx(
    fn: Callable[..., jax.Array],
    inputs: dict[str, tuple[int | str, ...]],
    output_names: list[str],
    path: str | pathlib.Path,
    metadata: dict[str, Any] | None = None,
    via_jaxpr: bool = False,
) -> pathlib.Path:
    """Export `fn(*inputs)` (float32 inputs named and shaped by `inputs`, a str dim symbolic, e.g. "B") to
    `path` (.onnx), params closed over as constants; `metadata` (JSON values) goes into the model.

    `via_jaxpr`: trace `fn` to a jaxpr first and export that (concrete shapes only), so that library layers
    jax2onnx replaces by its own primitives (flax linen's Dense, which it cannot `vmap`) reach it as plain
    lax operations, e.g. an ensemble's members under `vmap`."""
    import jax2onnx
    import onnx

    specs = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in inputs.values()]
    if via_jaxpr:
        from jax.extend.core import jaxpr_as_fun

        closed = jax.make_jaxpr(fn)(*specs)
        traced = jaxpr_as_fun(closed)
        fn = lambda *args: traced(*args)[0]  # noqa: E731 — one output
    model = jax2onnx.to_onnx(
        fn, inputs=specs, model_name="saferl_policy", input_names=list(inputs), output_names=output_names
    )
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), json.dumps(value)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def export_policy_onnx(policy: Any, path: str | pathlib.Path) -> pathlib.Path:
    """Export a `saferl.policies.Policy` with an MLP (`policy.apply` not None) to ONNX at `path`.

    Raises UserError for policies without an MLP map (e.g. PETS's MPC planner), with memory in their carry
    or with an action repeat: what the memoryless, every-step graph cannot reproduce."""
    algo = getattr(policy, "algo", "?")
    if getattr(policy, "apply", None) is None:
        raise UserError(
            f"policy of algorithm '{algo}' has no MLP map to export "
            "(only MLP policies such as ppo/sac can be exported to ONNX)"
        )
    if jax.tree.leaves(policy.init_carry().memory):
        raise UserError(
            f"policy of algorithm '{algo}' keeps memory across steps (its carry); an ONNX graph "
            "is memoryless: only stateless MLP policies can be exported"
        )
    if observations.is_dict(policy.observation_size):
        raise UserError(
            f"policy of algorithm '{algo}' acts on dict observations {sorted(policy.observation_size)} "
            f"(image + state): ONNX export supports flat observation vectors only"
        )
    if policy.action_repeat != 1:
        raise UserError(
            f"policy of algorithm '{algo}' holds each action for {policy.action_repeat} steps; the "
            "on-board runner acts every step: only action_repeat 1 policies can be exported"
        )
    metadata = {
        "algo": algo,
        "env_name": policy.env_name,
        "observation_size": policy.observation_size,
        "action_size": policy.action_size,
        "cost_budget": float(policy.cost_budget),
    }
    out = export_apply_onnx(policy.apply, policy.params, policy.observation_size, path, metadata)
    check = np.zeros((2, policy.observation_size), np.float32)
    action = np.asarray(policy.apply(policy.params, jnp.asarray(check)))
    if action.shape != (2, policy.action_size):
        raise UserError(f"policy.apply gives actions of shape {action.shape}, expected (2, {policy.action_size})")
    return out
