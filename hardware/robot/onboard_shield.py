"""On-board shielded policy: SOOPER's learner behind its shield, run by the robot itself (numpy + onnxruntime).

Loads a directory written by `saferl.export.shielded` (`shield.json` + ONNX graphs), keeps the episode's
cost spent C from the costs the robot measures, and at every decision (every `action_repeat`-th step; the
action is held in between), with a = learner(s):

    budget:    fires ⇔ C + scale · Q_c(s, a) ≥ d          recovery:  fires ⇔ C + bound(s, a) + m ≥ d

executing the prior's π̂(s) where it fires, else a — the rule of `saferl.agents.sooper.shield`, evaluated in
float32 as the JAX shield is; unlike it, a non-finite Q_c, bound or learner action also fires (fail safe).
The shield needs no workstation and no link.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

from hardware.robot.interface import RobotSpec
from hardware.robot.onboard import open_session

# the manifest's format (kept equal to saferl.export.shielded's, which this module may not import)
MANIFEST = "shield.json"
FORMAT, FORMAT_VERSION = "saferl-shielded-policy", 1
GRAPHS = {"budget": ("learner", "prior", "cost_critic"), "recovery": ("learner", "prior", "lookahead")}
_FIELDS = {  # manifest field -> (type, lowest value, strictly above it)
    "budget": (float, 0.0, False),
    "scale": (float, 0.0, True),
    "margin": (float, 0.0, False),
    "episode_length": (int, 1, False),
    "action_repeat": (int, 1, False),
    "observation_size": (int, 1, False),
    "action_size": (int, 1, False),
}


def read_manifest(directory: str | pathlib.Path) -> dict[str, Any]:
    """The checked `shield.json` of an exported shielded policy; ValueError naming what is wrong."""
    path = pathlib.Path(directory) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{directory}: no {MANIFEST} (not a shielded policy export, or an incomplete one)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {manifest.get('format_version')!r}; supported: {FORMAT_VERSION}")
    rule = manifest.get("rule")
    if rule not in GRAPHS:
        raise ValueError(f"{path}: rule {rule!r} unknown; supported: {', '.join(GRAPHS)}")
    for name, (kind, low, strict) in _FIELDS.items():
        value: Any = manifest.get(name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if numeric and kind is int:
            numeric = float(value).is_integer()
        if not (numeric and (value > low if strict else value >= low)):
            allowed = f"{'an integer' if kind is int else 'a finite number'} {'>' if strict else '>='} {low}"
            raise ValueError(f"{path}: {name} must be {allowed}, got {value!r}")
        manifest[name] = kind(value)
    files = manifest.get("files")
    missing = [graph for graph in GRAPHS[rule] if not isinstance(files, dict) or not isinstance(files.get(graph), str)]
    if missing:
        raise ValueError(f"{path}: files lacks {', '.join(missing)} (rule {rule} needs {', '.join(GRAPHS[rule])})")
    return manifest


class OnboardShieldedPolicy:
    """`policy(obs [obs_dim]) -> action [act_dim]` (float32): the learner's action behind the shield.

    The robot calls it once per applied step, `observe_cost(cost)` after every step (in any mode) and `reset()`
    at every new episode; `shield_status()` gives the episode's cost spent, decisions and interventions.
    """

    def __init__(self, directory: str | pathlib.Path, spec: RobotSpec | None = None):
        directory = pathlib.Path(directory)
        manifest = read_manifest(directory)
        self.manifest, self.rule = manifest, manifest["rule"]
        self.obs_dim, self.action_dim = manifest["observation_size"], manifest["action_size"]
        if spec is not None:
            obs_dim, (action_dim,) = int(np.prod(spec.obs_shape)), spec.action_shape
            if (obs_dim, action_dim) != (self.obs_dim, self.action_dim):
                raise ValueError(
                    f"{directory}: the shielded policy takes observations of size {self.obs_dim} and gives actions "
                    f"of size {self.action_dim}; the robot gives {obs_dim} and takes {action_dim}"
                )
        self.repeat = manifest["action_repeat"]
        self.budget, self.scale, self.margin = (np.float32(manifest[k]) for k in ("budget", "scale", "margin"))
        self._sessions = {
            name: open_session(directory / manifest["files"][name], f"shielded-policy graph '{name}'")
            for name in GRAPHS[self.rule]
        }
        self._check_signatures(directory)
        self.cost_spent = 0.0  # the episode's cost so far (env cost units, summed in float64)
        self.decisions = 0  # decisions taken in this episode
        self.interventions = 0  # decisions where the shield executed the prior's action
        self._held: np.ndarray | None = None  # the last decision's action, held for `action_repeat` steps
        self._since_decision = 0  # steps since that decision
        # warm up every graph once: with the whole budget spent the shield fires, so the prior runs too
        action, _ = self.decide(np.zeros(self.obs_dim, np.float32), float(self.budget))
        if action.shape != (self.action_dim,):
            raise ValueError(f"{directory}: actions of shape {action.shape}, the manifest says ({self.action_dim},)")

    def _check_signatures(self, directory: pathlib.Path) -> None:
        """ValueError unless every graph's inputs and output match the manifest's sizes."""
        obs, action = self.obs_dim, self.action_dim
        expected = {  # graph -> (input name -> last dim, output's last dim or None for one value per row)
            "learner": ({"obs": obs}, action),
            "prior": ({"obs": obs}, action),
            "cost_critic": ({"obs": obs, "action": action}, None),
            "lookahead": ({"obs": obs, "action": action}, None),
        }
        for name, session in self._sessions.items():
            inputs, width = expected[name]
            declared = {i.name: i.shape[-1] if i.shape else None for i in session.get_inputs()}
            if set(declared) != set(inputs) or len(session.get_outputs()) != 1:
                raise ValueError(
                    f"{directory}: graph '{name}' has inputs {sorted(declared)} and {len(session.get_outputs())} "
                    f"outputs; expected inputs {sorted(inputs)} and one output"
                )
            for input_name, size in inputs.items():
                if isinstance(declared[input_name], int) and declared[input_name] != size:
                    raise ValueError(
                        f"{directory}: graph '{name}' takes {input_name} of size {declared[input_name]}, "
                        f"the manifest says {size}"
                    )
            shape = session.get_outputs()[0].shape
            out = shape[-1] if shape else None
            if width is not None and isinstance(out, int) and out != width:
                raise ValueError(f"{directory}: graph '{name}' gives actions of size {out}, the manifest says {width}")

    # ---- the rule ---------------------------------------------------------------------------------------------
    def _run(self, name: str, **inputs: np.ndarray) -> np.ndarray:
        session = self._sessions[name]
        return session.run(None, inputs)[0]

    def decide(self, obs: np.ndarray, cost_spent: float) -> tuple[np.ndarray, bool]:
        """One decision: (executed action [act_dim] float32, whether the shield fired) at observation `obs` with
        `cost_spent` spent in the episode so far. Changes nothing."""
        row = np.asarray(obs, np.float32).reshape(1, self.obs_dim)
        learner_action = self._run("learner", obs=row)
        spent = np.float32(cost_spent)
        if self.rule == "budget":
            cost_q = self._run("cost_critic", obs=row, action=learner_action)[0]
            needed = spent + self.scale * np.float32(cost_q)
        else:
            bound = self._run("lookahead", obs=row[0], action=learner_action[0])
            needed = spent + np.float32(bound) + self.margin
        # a non-finite Q_c, bound or learner action proves nothing: fire (fail safe)
        fires = bool(needed >= self.budget) or not (np.isfinite(needed) and np.all(np.isfinite(learner_action)))
        action = self._run("prior", obs=row) if fires else learner_action
        return np.asarray(action[0], np.float32), fires

    # ---- the episode ------------------------------------------------------------------------------------------
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The action for this step: a new decision every `action_repeat` calls (the first of an episode
        included), else the last decision's action held."""
        held = self._held
        if held is None or self._since_decision >= self.repeat:
            held, fires = self.decide(obs, self.cost_spent)
            self._held, self._since_decision = held, 0
            self.decisions += 1
            self.interventions += int(fires)
        self._since_decision += 1
        return held

    def observe_cost(self, cost: float) -> None:
        """Add the cost (≥ 0, env cost units) the robot measured for the step it applied; a non-finite reading is
        not added (the robot faults on it)."""
        try:
            cost = float(cost)
        except (TypeError, ValueError):
            return
        if math.isfinite(cost):
            self.cost_spent += cost

    def reset(self) -> None:
        """A new episode: nothing spent, no decision yet."""
        self.cost_spent, self.decisions, self.interventions = 0.0, 0, 0
        self._held, self._since_decision = None, 0

    def shield_status(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "budget": float(self.budget),
            "cost_spent": self.cost_spent,
            "decisions": self.decisions,
            "interventions": self.interventions,
        }
