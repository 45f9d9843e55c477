"""The on-board shielded policy (`hardware.robot.onboard_shield`) against the JAX shield it was exported from
(`saferl.export.shielded`, `saferl.agents.sooper.shield`): the same decisions and actions on random states and
costs spent, for the budget and the recovery rule; its episode bookkeeping; bad export directories refused."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hardware import endpoints
from hardware.robot import onboard_shield, serve
from hardware.robot.interface import RobotSpec
from hardware.robot.onboard import load_onboard
from hardware.robot.onboard_shield import OnboardShieldedPolicy

OBS, ACT = 5, 1  # safe_cartpole, the prior's env
SPEC = RobotSpec("cartpole", (OBS,), (-1.0,), (1.0,))
STATES = 64  # random states each rule is compared on
# cost spent this far (episode cost units) on either side of the value where the shield starts firing: far
# beyond the disagreement of ONNX and JAX float32 values (≤ 1e-4 relative, checked on export)
SIDE = 0.05


# ---- exports of a tiny SOOPER prior and a stand-in learner ---------------------------------------------------
@pytest.fixture(scope="module")
def jax_shield():
    """The prior of the SOOPER tests, a learner (the prior's actor with perturbed weights: the learned actor's
    network), an untrained 2-member ensemble and the shield's scale for 40-step episodes."""
    import jax

    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_runs import sooper_prior_run

    from saferl.agents.sooper.prior import load_prior
    from saferl.agents.sooper.shield import shield_scale
    from saferl.models import ensemble

    prior, template = load_prior(sooper_prior_run().run_dir)
    noise = lambda x, k: x + 0.3 * jax.random.normal(k, x.shape)  # noqa: E731
    leaves, treedef = jax.tree.flatten(prior.policy_params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    learner_params = jax.tree.unflatten(treedef, [noise(x, k) for x, k in zip(leaves, keys, strict=True)])
    model = ensemble.init(
        jax.random.PRNGKey(0), ensemble.EnsembleConfig(num_members=2, num_elites=2, hidden_sizes=(16,)), OBS, ACT, 7
    )
    return prior, template, learner_params, model, shield_scale(40, prior.cost_discounting)


def learner_apply(prior):
    return lambda params, obs: prior.replace(policy_params=params).action(obs)


def recovery_lookahead(prior, model, scale):
    from saferl.agents.sooper.planner import recovery_lookahead

    return recovery_lookahead(model, prior, 1.0, scale, 5)  # 5 decisions: finite values with an untrained model


@pytest.fixture(scope="module")
def states():
    rng = np.random.default_rng(3)
    return rng.normal(size=(STATES, OBS)).astype(np.float32)


def required(values: np.ndarray) -> float:
    """A budget where about half the states fire with nothing spent: the median of what they need."""
    return float(np.median(values))


@pytest.fixture(scope="module")
def budget_export(jax_shield, states, tmp_path_factory):
    from saferl.export.shielded import ShieldConstants, export_shielded_onnx

    prior, _, params, _, scale = jax_shield
    need = scale * np.asarray(prior.cost_value(states, learner_apply(prior)(params, states)))
    constants = ShieldConstants("budget", required(need), scale, episode_length=40)
    out = tmp_path_factory.mktemp("budget")
    export_shielded_onnx(out, learner_apply(prior), params, prior, constants, OBS, ACT, info={"algo": "test"})
    return out, constants


@pytest.fixture(scope="module")
def recovery_export(jax_shield, states, tmp_path_factory):
    import jax

    from saferl.export.shielded import ShieldConstants, export_shielded_onnx

    prior, _, params, model, scale = jax_shield
    lookahead = recovery_lookahead(prior, model, scale)
    actions = learner_apply(prior)(params, states)
    need = np.asarray(jax.vmap(lookahead)(states, actions)) + 0.1
    constants = ShieldConstants("recovery", required(need), scale, episode_length=40, margin=0.1)
    out = tmp_path_factory.mktemp("recovery")
    export_shielded_onnx(out, learner_apply(prior), params, prior, constants, OBS, ACT, lookahead=lookahead)
    return out, constants


def jax_decisions(jax_shield, constants, states, spent):
    """(actions [S, N, act_dim], fires [S, N]) of `saferl.agents.sooper.shield.shielded_policy` at every state
    and cost spent `spent` [S, N]."""
    import jax

    from saferl.agents.sooper.prior import prior_policy
    from saferl.agents.sooper.shield import shielded_policy
    from saferl.policies import stateless

    prior, template, params, model, scale = jax_shield
    apply = learner_apply(prior)
    learner = dataclasses.replace(template, act=stateless(lambda obs, key: apply(params, obs)), sample=None)
    lookahead = recovery_lookahead(prior, model, scale) if constants.rule == "recovery" else None
    policy = shielded_policy(
        learner,
        prior_policy(prior, template),
        scale=scale,
        budget=constants.budget,
        lookahead=lookahead,
        margin=constants.margin,
    )
    start = policy.init_carry()

    def act(obs, cost_spent):
        action, carry = policy.act(start.replace(cost_spent=cost_spent), obs, jax.random.PRNGKey(0))
        return action, carry.memory.interventions

    per_cost = jax.vmap(act, in_axes=(None, 0))
    actions, fires = jax.jit(jax.vmap(per_cost))(states, spent)
    return np.asarray(actions), np.asarray(fires) == 1


def spent_around_threshold(onboard: OnboardShieldedPolicy, states: np.ndarray) -> np.ndarray:
    """[S, 3] costs spent per state: none, and SIDE below and above where the shield starts to fire there
    (clipped at 0: states that fire with nothing spent fire at every cost)."""
    onboard_need = []
    for obs in states:
        row = obs.reshape(1, OBS).astype(np.float32)
        action = onboard._run("learner", obs=row)
        if onboard.rule == "budget":
            onboard_need.append(onboard.scale * onboard._run("cost_critic", obs=row, action=action)[0])
        else:
            onboard_need.append(onboard._run("lookahead", obs=row[0], action=action[0]) + onboard.margin)
    threshold = onboard.budget - np.asarray(onboard_need, np.float32)
    return np.maximum(np.stack([np.zeros_like(threshold), threshold - SIDE, threshold + SIDE], axis=1), 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["budget", "recovery"])
def test_onboard_shield_decides_and_acts_as_the_jax_shield(rule, jax_shield, states, request):
    directory, constants = request.getfixturevalue(f"{rule}_export")
    onboard = OnboardShieldedPolicy(directory, SPEC)
    spent = spent_around_threshold(onboard, states).astype(np.float32)
    jax_actions, jax_fires = jax_decisions(jax_shield, constants, states, spent)
    fires = np.zeros_like(jax_fires)
    actions = np.zeros_like(jax_actions)
    for i, obs in enumerate(states):
        for j, cost_spent in enumerate(spent[i]):
            actions[i, j], fires[i, j] = onboard.decide(obs, float(cost_spent))
    np.testing.assert_array_equal(fires, jax_fires)
    np.testing.assert_allclose(actions, jax_actions, atol=1e-5)  # the same float32 MLPs in ONNX and XLA
    # the comparison covers both outcomes, also on one state with two costs spent
    assert 0.2 < fires.mean() < 0.9, fires.mean()
    assert np.any(~fires[:, 1] & fires[:, 2])
    # where it fires the prior acts, elsewhere the learner (the two differ: the learner's weights are perturbed)
    learner = np.stack([onboard._run("learner", obs=obs[None])[0] for obs in states])
    prior = np.stack([onboard._run("prior", obs=obs[None])[0] for obs in states])
    np.testing.assert_allclose(actions[:, 0], np.where(fires[:, :1], prior, learner), atol=0)
    assert np.abs(learner - prior).max() > 0.01


@pytest.mark.slow
def test_export_writes_the_graphs_and_the_constants(budget_export, recovery_export, jax_shield):
    from saferl.export import shielded

    _, _, _, _, scale = jax_shield
    directory, constants = recovery_export
    manifest = json.loads((directory / shielded.MANIFEST).read_text())
    assert manifest["rule"] == "recovery" and manifest["budget"] == constants.budget and manifest["scale"] == scale
    assert (manifest["margin"], manifest["action_repeat"], manifest["episode_length"]) == (0.1, 1, 40)
    assert (manifest["observation_size"], manifest["action_size"]) == (OBS, ACT)
    assert set(manifest["files"]) == {"learner", "prior", "cost_critic", "lookahead"}
    assert set(manifest["versions"]) == {"saferl", "jax", "jax2onnx", "onnx"}
    budget_manifest = json.loads((budget_export[0] / shielded.MANIFEST).read_text())
    assert set(budget_manifest["files"]) == {"learner", "prior", "cost_critic"} and budget_manifest["margin"] == 0.0
    assert budget_manifest["info"] == {"algo": "test"}
    # the robot side's copy of the format is the exporter's
    assert (onboard_shield.MANIFEST, onboard_shield.FORMAT, onboard_shield.FORMAT_VERSION) == (
        shielded.MANIFEST,
        shielded.FORMAT,
        shielded.FORMAT_VERSION,
    )


@pytest.mark.slow
def test_export_uses_the_updated_cost_critic(jax_shield, tmp_path):
    import jax

    from saferl.export.shielded import ShieldConstants, export_shielded_onnx

    prior, _, params, _, scale = jax_shield
    updated = jax.tree.map(lambda x: 1.5 * x, prior.cost_q_params)
    constants = ShieldConstants("budget", 1.0, scale, episode_length=40)
    export_shielded_onnx(tmp_path, learner_apply(prior), params, prior, constants, OBS, ACT, cost_q_params=updated)
    onboard = OnboardShieldedPolicy(tmp_path)
    obs = np.random.default_rng(0).normal(size=(4, OBS)).astype(np.float32)
    action = np.random.default_rng(1).uniform(-1, 1, (4, ACT)).astype(np.float32)
    got = onboard._sessions["cost_critic"].run(None, {"obs": obs, "action": action})[0]
    np.testing.assert_allclose(got, np.asarray(prior.cost_value(obs, action, updated)), rtol=1e-4, atol=1e-5)
    assert np.abs(got - np.asarray(prior.cost_value(obs, action))).max() > 1e-3


def test_export_refuses_a_rule_the_robot_cannot_run_and_a_file_as_its_directory(tmp_path):
    from saferl.errors import UserError
    from saferl.export.shielded import ShieldConstants, export_shielded_onnx

    with pytest.raises(ValueError, match="rule must be one of budget/recovery"):
        ShieldConstants("advantage", 1.0, 1.0, episode_length=40)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        ShieldConstants("budget", 1.0, 0.0, episode_length=40)
    with pytest.raises(UserError, match="recovery rule needs the lookahead"):
        export_shielded_onnx("unused", None, None, None, ShieldConstants("recovery", 1.0, 1.0, 40), OBS, ACT)
    (tmp_path / "policy.onnx").write_text("")
    with pytest.raises(UserError, match="is a file; a shielded policy is written to a directory"):
        export_shielded_onnx(tmp_path / "policy.onnx", None, None, None, ShieldConstants("budget", 1, 1, 40), OBS, ACT)


# ---- hand-made graphs (no JAX): the episode bookkeeping and bad directories -----------------------------------
def _graph(name: str, inputs: dict[str, list], output: list, nodes: list, weights: dict[str, np.ndarray]):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, shape) for k, shape in inputs.items()],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, output)],
        [helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.ravel()) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_tiny_export(directory: pathlib.Path, obs: int = OBS, act: int = ACT, **manifest) -> pathlib.Path:
    """A budget-rule export of linear graphs: learner a = 0.5, prior π̂ = −0.5, Q_c(s, a) = s_0 + a_0 (all but
    s_0 zero-weighted); the shield fires where C + scale·(s_0 + 0.5) ≥ d."""
    directory.mkdir(parents=True, exist_ok=True)

    def const(value: float) -> tuple[list, dict]:
        nodes = [helper.make_node("MatMul", ["obs", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["out"])]
        return nodes, {"w": np.zeros((obs, act), np.float32), "b": np.full(act, value, np.float32)}

    for name, value in (("learner", 0.5), ("prior", -0.5)):
        nodes, weights = const(value)
        onnx.save_model(_graph(name, {"obs": ["B", obs]}, ["B", act], nodes, weights), str(directory / f"{name}.onnx"))
    critic = [
        helper.make_node("Concat", ["obs", "action"], ["x"], axis=-1),
        helper.make_node("MatMul", ["x", "w"], ["out"]),
    ]
    w = np.zeros(obs + act, np.float32)
    w[0] = w[obs] = 1.0
    model = _graph("cost_critic", {"obs": ["B", obs], "action": ["B", act]}, ["B"], critic, {"w": w})
    onnx.save_model(model, str(directory / "cost_critic.onnx"))
    fields = {
        "format": "saferl-shielded-policy",
        "format_version": 1,
        "rule": "budget",
        "budget": 2.0,
        "scale": 1.0,
        "episode_length": 100,
        "action_repeat": 1,
        "margin": 0.0,
        "observation_size": obs,
        "action_size": act,
        "files": {"learner": "learner.onnx", "prior": "prior.onnx", "cost_critic": "cost_critic.onnx"},
    }
    (directory / "shield.json").write_text(json.dumps(fields | manifest))
    return directory


def at(s0: float) -> np.ndarray:
    return np.array([s0, 0, 0, 0, 0], np.float32)


def test_the_robot_keeps_the_cost_spent_and_applies_the_rule_every_decision(tmp_path):
    policy = load_onboard(write_tiny_export(tmp_path / "p"), SPEC)  # a directory loads the shielded policy
    assert isinstance(policy, OnboardShieldedPolicy)
    assert policy(at(0.0))[0] == 0.5  # 0 + 1·(0 + 0.5) < 2: the learner acts
    policy.observe_cost(1.0)
    assert policy(at(0.0))[0] == 0.5  # 1 + 0.5 < 2
    policy.observe_cost(0.6)
    assert policy(at(0.0))[0] == -0.5  # 1.6 + 0.5 ≥ 2: the prior acts
    policy.observe_cost(float("nan"))  # a bad reading (the robot faults on it) is not added
    assert policy.shield_status() == {
        "rule": "budget",
        "budget": 2.0,
        "cost_spent": pytest.approx(1.6),
        "decisions": 3,
        "interventions": 1,
    }
    policy.reset()
    assert policy(at(0.0))[0] == 0.5 and policy.shield_status()["interventions"] == 0
    assert policy(at(1.6))[0] == -0.5  # 0 + (1.6 + 0.5) ≥ 2: a state can fire with nothing spent
    policy(at(np.nan))  # a non-finite Q_c proves nothing: the shield fires (fail safe)
    assert policy.shield_status()["interventions"] == 2


def test_with_an_action_repeat_the_robot_decides_every_repeat_steps(tmp_path):
    policy = OnboardShieldedPolicy(write_tiny_export(tmp_path / "p", action_repeat=3))
    actions = [policy(at(s0))[0] for s0 in (0.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0)]
    assert actions == [0.5, 0.5, 0.5, -0.5, -0.5, -0.5, 0.5]  # held between decisions at steps 0, 3, 6
    assert policy.shield_status()["decisions"] == 3


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: (d / "shield.json").unlink(), "no shield.json"),
        (lambda d: (d / "prior.onnx").unlink(), "graph 'prior' file .*prior.onnx not found"),
        (lambda d: (d / "shield.json").write_text("{"), "not JSON"),
        (lambda d: write_tiny_export(d, observation_size=4), "takes observations of size 4 .* the robot gives 5"),
        (lambda d: write_tiny_export(d, action_size=2), "gives actions of size 2; the robot .* takes 1"),
        (lambda d: write_tiny_export(d, obs=4, observation_size=5), "graph 'learner' takes obs of size 4, .* says 5"),
        (lambda d: write_tiny_export(d, rule="advantage"), "rule 'advantage' unknown; supported: budget, recovery"),
        (lambda d: write_tiny_export(d, rule="recovery"), "files lacks lookahead"),
        (lambda d: write_tiny_export(d, budget=-1.0), "budget must be a finite number >= 0.0, got -1.0"),
        (lambda d: write_tiny_export(d, action_repeat=1.5), "action_repeat must be an integer >= 1"),
        (lambda d: write_tiny_export(d, format_version=2), "format_version 2; supported: 1"),
        (lambda d: (d / "learner.onnx").write_bytes(b"not onnx"), "cannot load shielded-policy graph 'learner'"),
    ],
    ids=[
        "no-manifest",
        "missing-graph",
        "manifest-not-json",
        "obs-size-vs-robot",
        "action-size-vs-robot",
        "obs-size-vs-graph",
        "unknown-rule",
        "recovery-without-lookahead",
        "negative-budget",
        "fractional-repeat",
        "future-format",
        "corrupt-graph",
    ],
)
def test_a_bad_export_directory_is_refused_with_what_is_wrong(tmp_path, change, message):
    directory = write_tiny_export(tmp_path / "p")
    change(directory)
    with pytest.raises(ValueError, match=message):
        OnboardShieldedPolicy(directory, SPEC)


def test_the_robot_server_refuses_a_bad_shielded_policy_in_one_line(tmp_path, capsys):
    directory = write_tiny_export(tmp_path / "p")  # obs 5: the point-mass robot gives 2
    argv = ["hardware.robot.examples:PointMassRobot", "--onboard", str(directory)]
    code = serve.main([*argv, "--bind", endpoints.free_loopback_address()])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and "the robot gives 2 and takes 1" in err[0]


def test_the_shielded_policy_loads_and_acts_without_jax(tmp_path):
    directory = write_tiny_export(tmp_path / "p")
    code = (
        "import sys; from hardware.robot.onboard import load_onboard; from hardware.robot.interface import RobotSpec; "
        f"p = load_onboard({str(directory)!r}, RobotSpec('t', (5,), (-1.0,), (1.0,))); p([0.0] * 5); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'saferl', 'envs')]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
