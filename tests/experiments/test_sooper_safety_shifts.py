"""experiments/benchmarks/sooper_safety.py's point_goal settings: the shifts' "inside" flags follow from the
prior recipe's randomisation ranges, and the learner uses experiments/sooper_table.py's point_goal settings."""

import importlib.util
import pathlib

import pytest

from envs.training_env import shift_presets
from saferl.agents.sac.prior_recipes import RECIPES

ROOT = pathlib.Path(__file__).resolve().parents[2]
# shift field -> the randomisation range that covers it (the robot is point_goal's only body: a body's mass
# scale is the env's mass scale)
_RANGE_OF = {
    "mass_scale": "mass_scale",
    "body_mass_scale": "mass_scale",
    "damping_scale": "damping_scale",
    "friction_scale": "friction_scale",
    "actuator_gain_scale": "actuator_gain_scale",
    "gravity_scale": "gravity_scale",
}


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite():
    return _load(ROOT / "experiments" / "benchmarks" / "sooper_safety.py")


def _factors(env_name: str, overrides: dict) -> list[tuple[str, float]]:
    """(randomised quantity, factor) of every physical factor a shift's `shift.*` overrides set."""
    fields = {key.split(".", 1)[1]: value for key, value in overrides.items()}
    preset = fields.pop("preset", "")
    merged = {**shift_presets(env_name).get(preset, {}), **fields} if preset else fields
    factors = []
    for name, value in merged.items():
        values = value.values() if isinstance(value, dict) else [value]
        factors += [(_RANGE_OF[name], float(v)) for v in values]
    return factors


def test_point_goal_inside_flags_match_the_prior_ranges(suite):
    recipe = RECIPES["point_goal"]
    ranges = {
        key.split(".", 1)[1]: value for key, value in recipe.env_overrides.items() if key.startswith("randomization.")
    }
    shifts = suite.ENVS["point_goal"]["shifts"]
    assert sum(inside for _, inside, _ in shifts.values()) >= 6
    assert sum(not inside for _, inside, _ in shifts.values()) >= 2
    assert shifts["heavy_robot"][1]  # the table's shift lies inside the prior's ranges
    for name, (overrides, inside, acceptance) in shifts.items():
        factors = _factors("point_goal", overrides)
        assert factors, name
        within = all(lo <= f <= hi for quantity, f in factors for lo, hi in [ranges.get(quantity, (1.0, 1.0))])
        assert within == inside, name
        assert acceptance == inside, name  # every shift inside is held to the acceptance, none outside


def test_point_goal_learner_settings_match_the_method_table(suite):
    table = _load(ROOT / "experiments" / "sooper_table.py")
    setting = suite.ENVS["point_goal"]
    assert setting["method_overrides"] == table.SETTINGS["point_goal"]["method_overrides"]
    assert setting["env_overrides"] == table.SETTINGS["point_goal"]["env_overrides"]
    assert setting["env_overrides"] == dict(RECIPES["point_goal"].task_overrides)
    assert suite.ENVS["safe_cartpole"]["shifts"] is suite.SHIFTS  # cart-pole's suite unchanged
