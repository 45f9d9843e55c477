"""Registry: names, overrides, and clear errors listing the valid choices."""

import pytest

import envs


def test_names_lists_every_env_of_the_issue():
    assert {"pendulum", "safe_cartpole", "point_goal"} <= set(envs.names())


def test_unknown_env_name_raises_env_error_listing_valid_names():
    with pytest.raises(envs.EnvError, match=r"available envs: .*point_goal.*safe_cartpole"):
        envs.make("cartpole_typo")


def test_unknown_config_key_raises_env_error_listing_valid_keys():
    with pytest.raises(envs.EnvError, match=r"\['cost_bund'\].*valid keys: .*cost_bound"):
        envs.make("safe_cartpole", cost_bund=0.3)


def test_invalid_config_value_raises_env_error_naming_the_field():
    with pytest.raises(envs.EnvError, match="cost_bound"):
        envs.make("safe_cartpole", cost_bound=5.0)  # beyond the 1.8 m rail
    with pytest.raises(envs.EnvError, match="n_hazards"):
        envs.make("point_goal", n_hazards=20)  # more objects than layout cells


def test_overrides_reach_the_env_config():
    env = envs.make("safe_cartpole", cost_bound=0.5, episode_length=200)
    assert env.config.cost_bound == 0.5 and env.episode_length == 200
    assert envs.default_config("safe_cartpole").cost_budget == 100.0
    assert envs.default_config("point_goal").cost_budget == 25.0


def test_env_error_is_a_value_error_for_callers_catching_bad_input():
    assert issubclass(envs.EnvError, ValueError)


@pytest.mark.parametrize("key, value", [("pole_length", -1.0), ("pole_mass", 0.0), ("joint_damping", -0.1)])
def test_pendulum_rejects_non_physical_parameters(key, value):
    with pytest.raises(envs.EnvError, match=key):
        envs.make("pendulum", **{key: value})
