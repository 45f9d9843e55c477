"""saferl-deploy bad inputs (one line, non-zero exit) and ONNX export of a brax PPO policy (JAX vs ONNX)."""

import dataclasses

import jax
import numpy as np
import pytest
from bridge_helpers import tiny_policy

from hardware import cli
from hardware.robot.interface import RobotSpec
from hardware.robot.onboard import OnboardPolicy


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        ["run"],
        ["run", "/no/such/run"],
        ["run", "/tmp", "--episodes", "0"],
        ["ping", "tcp://nohostport"],
        ["ping", "tcp://127.0.0.1:9", "--timeout", "0.2"],
        ["sim", "no_such_env"],
        ["replay", "/no/such/dir"],
        ["sim", "pendulum", "--bind", "udp://x:1"],
    ],
)
def test_bad_cli_input_prints_one_line_and_exits_nonzero(argv, capsys):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("error: ") and "\n" not in err, err


def test_keys_refuses_to_overwrite(tmp_path, capsys):
    assert cli.main(["keys", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "authorized" / "client.key").exists()
    assert cli.main(["keys", str(tmp_path / "k")]) == 2
    assert "already exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ppo_policy():
    """A brax PPO policy network (normaliser + tanh-normal head) in the saferl Policy shape, untrained."""
    from brax.training.acme import running_statistics, specs
    from brax.training.agents.ppo import networks as ppo_networks

    from saferl.policies.policy import Policy, stateless, stateless_carry

    obs_dim, act_dim = 5, 2
    nets = ppo_networks.make_ppo_networks(
        obs_dim, act_dim, preprocess_observations_fn=running_statistics.normalize, policy_hidden_layer_sizes=(32, 32)
    )
    normalizer = running_statistics.init_state(specs.Array((obs_dim,), np.dtype("float32")))
    normalizer = running_statistics.update(normalizer, jax.random.normal(jax.random.PRNGKey(1), (64, obs_dim)) * 3)
    params = (normalizer, nets.policy_network.init(jax.random.PRNGKey(0)))
    dist = nets.parametric_action_distribution

    def apply(policy_params, obs):
        return dist.mode(nets.policy_network.apply(*policy_params, obs))

    return Policy(
        act=stateless(lambda obs, key: apply(params, obs)),
        init_carry=stateless_carry,
        params=params,
        apply=apply,
        observation_size=obs_dim,
        action_size=act_dim,
        env_name="test",
        env_config=None,
        cost_budget=1.0,
        algo="ppo",
    )


@pytest.mark.slow
def test_exported_ppo_policy_matches_jax_on_random_observations(ppo_policy, tmp_path):
    from saferl.export.onnx import export_policy_onnx

    path = export_policy_onnx(ppo_policy, tmp_path / "ppo.onnx")
    runner = OnboardPolicy(path, RobotSpec("t", (5,), (-1.0, -1.0), (1.0, 1.0)))
    assert runner.metadata["algo"] == '"ppo"'
    obs = np.random.default_rng(0).normal(0, 3, (200, 5)).astype(np.float32)
    expected = np.asarray(ppo_policy.apply(ppo_policy.params, obs))
    got = runner.session.run(None, {"obs": obs})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 graphs, same op order up to fusion
    np.testing.assert_allclose(runner(obs[0]), expected[0], atol=1e-5)


def test_export_refuses_policies_without_an_mlp(tmp_path):
    from saferl.errors import UserError
    from saferl.export.onnx import export_policy_onnx

    policy = dataclasses.replace(tiny_policy(3, 1), apply=None)
    with pytest.raises(UserError, match="no MLP"):
        export_policy_onnx(policy, tmp_path / "x.onnx")


def test_export_refuses_policies_the_memoryless_every_step_graph_cannot_reproduce(tmp_path):
    import jax.numpy as jnp

    from saferl.errors import UserError
    from saferl.export.onnx import export_policy_onnx
    from saferl.policies import PolicyCarry

    with_memory = dataclasses.replace(tiny_policy(3, 1), init_carry=lambda: PolicyCarry(jnp.zeros(()), jnp.zeros(4)))
    with pytest.raises(UserError, match="keeps memory"):
        export_policy_onnx(with_memory, tmp_path / "x.onnx")
    with pytest.raises(UserError, match="holds each action for 2 steps"):
        export_policy_onnx(tiny_policy(3, 1, action_repeat=2), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_onboard_runner_rejects_a_policy_for_another_robot(tmp_path):
    from saferl.export.onnx import export_apply_onnx

    policy = tiny_policy(3, 1)
    path = export_apply_onnx(policy.apply, policy.params, 3, tmp_path / "tiny.onnx")
    with pytest.raises(ValueError, match="observations of size 3"):
        OnboardPolicy(path, RobotSpec("t", (4,), (-1.0,), (1.0,)))
