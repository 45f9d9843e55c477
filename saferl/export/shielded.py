"""Export SOOPER's shielded policy for a robot without JAX: the learner's actor, the prior's actor π̂ and the
prior's cost critic Q_c (and, for the recovery rule, the one-step lookahead through the ensemble) as ONNX
graphs, plus `shield.json` with the shield's constants. `hardware.robot.onboard_shield` runs them with
onnxruntime, keeps the episode's cost spent C and applies, at every decision with a = learner(s),

    budget:    fires ⇔ C + scale · Q_c(s, a) ≥ d          recovery:  fires ⇔ C + bound(s, a) + m ≥ d

executing π̂(s) where it fires, else a (`saferl.agents.sooper.shield`: `shield_fires`, `recovery_fires`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saferl.config import is_integer, is_real
from saferl.errors import UserError
from saferl.export.onnx import export_function_onnx

MANIFEST = "shield.json"  # written last: a directory without it is an incomplete export
FORMAT, FORMAT_VERSION = "saferl-shielded-policy", 1
RULES = ("budget", "recovery")
FILES = {
    "learner": "learner.onnx",  # obs [B, obs_dim] -> action [B, act_dim]: the learner's deterministic action a
    "prior": "prior.onnx",  # obs [B, obs_dim] -> action [B, act_dim]: π̂(s)
    "cost_critic": "cost_critic.onnx",  # obs [B, obs_dim], action [B, act_dim] -> cost_q [B]: Q_c(s, a) ≥ 0
    "lookahead": "lookahead.onnx",  # recovery only: obs [obs_dim], action [act_dim] -> bound []
}
_CHECK_ROWS = 8  # random observations each exported graph is checked on against JAX
_CHECK_TOL = 1e-4  # |ONNX − JAX| ≤ tol·(1 + |JAX|): float32 graphs computed in another op order


@dataclasses.dataclass(frozen=True)
class ShieldConstants:
    """The shield's constants as `shield.json` carries them (saferl.agents.sooper.shield)."""

    rule: str  # "budget" (C + scale·Q_c(s, a) ≥ d) or "recovery" (C + bound(s, a) + m ≥ d)
    budget: float  # d, the episode cost budget (env cost units, finite, ≥ 0)
    scale: float  # T·(1 − γ_c)/action_repeat: episode cost units per unit of Q_c (finite, > 0)
    episode_length: int  # T, env steps per episode the scale was derived for (≥ 1)
    action_repeat: int = 1  # env steps each decision is held for (≥ 1): the robot decides every r-th step
    margin: float = 0.0  # m, the recovery rule's margin (episode cost units, finite, ≥ 0; 0 for "budget")

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(
                f"rule must be one of {'/'.join(RULES)} (what the robot can run), got {self.rule!r}; "
                "the advantage filter and 'none' are not exported"
            )
        for name, low, strict in (("budget", 0.0, False), ("scale", 0.0, True), ("margin", 0.0, False)):
            value = getattr(self, name)
            ok = is_real(value) and math.isfinite(value) and (value > low if strict else value >= low)
            if not ok:
                raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {low}, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("episode_length", "action_repeat"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))


def export_shielded_onnx(
    out_dir: str | pathlib.Path,
    learner_apply: Callable[[Any, jax.Array], jax.Array],
    learner_params: Any,
    prior: Any,
    shield: ShieldConstants,
    observation_size: int,
    action_size: int,
    *,
    lookahead: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    cost_q_params: Any = None,
    info: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Write the shielded policy's graphs and `shield.json` to `out_dir`; returns the manifest's path.

    `learner_apply(learner_params, obs [B, obs_dim]) -> action [B, act_dim]` is the learner's deterministic
    action; `prior` a `saferl.agents.sooper.prior.Prior` (actor π̂ and cost critic Q_c = max of the twin
    critics, ≥ 0), its cost critic replaced by `cost_q_params` where given (SOOPER's updated critic). The
    recovery rule needs `lookahead(obs [obs_dim], action [act_dim]) -> bound []` (episode cost units, e.g.
    `saferl.agents.sooper.planner.recovery_lookahead`), exported as one graph. `info` (JSON values: algo, env,
    pessimism, ...) is copied into the manifest. Every graph is checked against JAX on random observations.
    Raises UserError for a rule without what it needs, or a graph that disagrees with JAX.
    """
    if shield.rule == "recovery" and lookahead is None:
        raise UserError("the recovery rule needs the lookahead (bound(s, a) through the ensemble) to export")
    if shield.rule == "budget" and lookahead is not None:
        raise UserError("a lookahead is exported with the recovery rule only, not with rule 'budget'")
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out_dir)!r} is a file; a shielded policy is written to a directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted export then leaves no manifest to load
    if cost_q_params is not None:
        prior = prior.replace(cost_q_params=cost_q_params)
    learner_params = jax.tree.map(jnp.asarray, learner_params)
    batch, one_obs, one_action = ("B", observation_size), (observation_size,), (action_size,)
    graphs: dict[str, tuple[Callable[..., jax.Array], dict[str, tuple[int | str, ...]], str]] = {
        "learner": (lambda obs: learner_apply(learner_params, obs), {"obs": batch}, "action"),
        "prior": (prior.action, {"obs": batch}, "action"),
        "cost_critic": (prior.cost_value, {"obs": batch, "action": ("B", action_size)}, "cost_q"),
    }
    if lookahead is not None:
        graphs["lookahead"] = (lookahead, {"obs": one_obs, "action": one_action}, "bound")
    for name, (fn, inputs, output) in graphs.items():
        as_float32 = lambda *args, fn=fn: jnp.asarray(fn(*args), jnp.float32)  # noqa: E731
        path = export_function_onnx(as_float32, inputs, [output], out / FILES[name], via_jaxpr=name == "lookahead")
        _check_against_jax(path, as_float32, inputs, action_size if output == "action" else None)
    manifest = _manifest(shield, observation_size, action_size, list(graphs), info)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out / MANIFEST


def _manifest(
    shield: ShieldConstants, observation_size: int, action_size: int, graphs: list[str], info: dict[str, Any] | None
) -> dict[str, Any]:
    import onnx

    import saferl

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **dataclasses.asdict(shield),
        "observation_size": int(observation_size),
        "action_size": int(action_size),
        "files": {name: FILES[name] for name in graphs},
        "versions": {
            "saferl": saferl.__version__,
            "jax": jax.__version__,
            "jax2onnx": importlib.metadata.version("jax2onnx"),
            "onnx": onnx.__version__,
        },
        "info": dict(info or {}),
    }


def _check_against_jax(
    path: pathlib.Path, fn: Callable[..., jax.Array], inputs: dict[str, tuple[int | str, ...]], width: int | None
) -> None:
    """UserError unless `fn` gives rows of `width` values (None: one value per row) and the graph at `path`
    agrees with it on random inputs (observations N(0, 1), actions uniform in [-1, 1]; one row at a time where
    the graph has no batch axis)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # jax2onnx leaves unused initialisers; onnxruntime warns about each
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    batched = all(shape[0] == "B" for shape in inputs.values())
    rows = _CHECK_ROWS if batched else 2
    arrays = {}
    for name, shape in inputs.items():
        size = (rows, int(shape[-1]))
        value = rng.uniform(-1, 1, size) if name == "action" else rng.normal(size=size)
        arrays[name] = value.astype(np.float32)
    if batched:
        got = session.run(None, arrays)[0]
        want = np.asarray(fn(*arrays.values()))
    else:
        got = np.stack([session.run(None, {k: v[i] for k, v in arrays.items()})[0] for i in range(rows)])
        want = np.stack([np.asarray(fn(*(jnp.asarray(v[i]) for v in arrays.values()))) for i in range(rows)])
    expected = (rows,) if width is None else (rows, width)
    if want.shape != expected:
        raise UserError(f"{path.name}: JAX gives outputs of shape {want.shape} for {rows} rows, expected {expected}")
    # NaN where JAX gives NaN too (an untrained model's long lookahead may diverge; the robot's shield fires there)
    if got.shape != want.shape or not np.all(np.isclose(got, want, _CHECK_TOL, _CHECK_TOL, equal_nan=True)):
        raise UserError(
            f"{path.name}: the ONNX graph disagrees with JAX (shapes {got.shape} vs {want.shape}, largest "
            f"difference {np.nanmax(np.abs(got - want)) if got.shape == want.shape else 'n/a'}); not exported"
        )
