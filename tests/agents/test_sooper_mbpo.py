"""SOOPER's MBPO learner (`learner=mbpo`, `saferl/agents/sooper/mbpo.py`): a tiny run through the CLI's own `main`
on safe_cartpole with the heavy pole (margin ≥ 0, the learned actor moved away from the prior's, the loaded policy
is that actor behind the shield and imports no trainer), bit-for-bit resume, the imagined MDP's termination where
the shield fires, and config errors. One tiny run (`mbpo_run`, ≈ 15 s warm on 2 cores) serves every test."""

import functools
import json
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import SOOPER_ENV, SOOPER_EPISODE, SOOPER_TINY
from tiny_runs import cli_in_process, copy_run, sooper_prior_run

from saferl import registry
from saferl.agents.sooper import mbpo
from saferl.agents.sooper.config import METHOD_CONFIGS as METHODS
from saferl.agents.sooper.config import MBPOConfig, SooperConfig
from saferl.agents.sooper.policy import load_learner_actor
from saferl.agents.sooper.prior import load_prior
from saferl.agents.sooper.train import restore_agent
from saferl.config import apply_overrides
from saferl.constraints import init as init_constraint
from saferl.errors import UserError
from saferl.policies import load_policy
from saferl.training.run import train

EPISODES = 3  # 1 of the prior, then 2 of the MBPO actor
# budget 40: the tiny prior spends ≈ 24 per episode in SOOPER_ENV's narrow band on the heavy pole (over its budget
# of 5), so with 5 no policy could keep a margin ≥ 0; with 40 the shield has room to let the actor act and must
# still hold it within the budget
BUDGET = 40.0
MBPO_TINY = {
    "budget": BUDGET,
    "learner": "mbpo",
    "mbpo.rollouts": 64,
    "mbpo.horizon": 3,
    "mbpo.updates": 40,
    "mbpo.batch_size": 32,
}


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@functools.cache
def mbpo_run() -> pathlib.Path:
    """One tiny `saferl train sooper --set learner=mbpo` run (SOOPER_TINY + MBPO_TINY), through the CLI's `main`,
    shared by this module's tests."""
    import tempfile

    out = pathlib.Path(tempfile.mkdtemp(prefix="saferl-sooper-mbpo-"))
    prior = str(sooper_prior_run().run_dir)
    sets = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in {**SOOPER_TINY, **MBPO_TINY}.items()]
    envs = [f"{k}={v}" for k, v in {**SOOPER_ENV, "shift.preset": "heavy_pole"}.items()]
    args = ["train", "sooper", "--env", "safe_cartpole", "--steps", str(EPISODES * SOOPER_EPISODE), "--quiet"]
    args += ["--logger", "none", "--out", str(out), "--set", f"prior={prior}"]
    args += [a for s in sets for a in ("--set", s)] + [a for e in envs for a in ("--set-env", e)]
    code, _, err = cli_in_process(args)
    assert code == 0, err[-3000:]
    (run_dir,) = out.iterdir()
    return run_dir


def test_mbpo_run_stays_within_budget_and_learns_an_actor_away_from_the_prior():
    run_dir = mbpo_run()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == EPISODES and summary["safety_margin"] >= 0
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("learner_critic_loss", "learner_actor_loss", "imagined_termination", "improve_s", "shield_margin"):
        assert name in header
    _, run = restore_agent(run_dir)
    prior, _ = load_prior(run.algo_config.prior)
    assert not _equal(run.state.learner.policy_params, prior.policy_params)
    assert not _equal(run.state.learner.q_params, prior.q_params)
    assert run.algo_config.learner == "mbpo"


def test_loaded_mbpo_policy_is_the_learned_actor_behind_the_shield():
    run_dir = mbpo_run()
    policy, actor = load_policy(run_dir), load_learner_actor(run_dir)
    _, run = restore_agent(run_dir)
    assert policy.algo == "sooper" and policy.cost_budget == BUDGET
    obs = jnp.zeros(policy.observation_size).at[1].set(-1.0)
    carry = policy.init_carry()
    action, carry = policy.act(carry, obs, jax.random.PRNGKey(0))
    learned = actor.apply(actor.params, obs)
    assert _equal(actor.params[1], run.state.learner.policy_params)  # the checkpoint's actor
    if int(carry.memory.interventions) == 0:  # deterministic: the actor's own action where the shield lets it
        np.testing.assert_allclose(action, learned, atol=1e-6)
    # with the budget spent, the shield executes the prior's action instead
    prior, _ = load_prior(run.algo_config.prior)
    spent = policy.init_carry().replace(cost_spent=jnp.asarray(BUDGET, jnp.float32))
    shielded, after = policy.act(spent, obs, jax.random.PRNGKey(0))
    assert int(after.memory.interventions) == 1
    np.testing.assert_allclose(shielded, prior.action(obs), atol=1e-6)


def test_imagined_rollouts_end_where_the_shield_fires_with_the_priors_value():
    agent, run = restore_agent(mbpo_run())
    state = run.state
    prior = agent.current_prior(state.cost_q_params)
    data = jax.jit(
        lambda s, key: mbpo.imagine_rollouts(
            agent.config, agent.rule, s.model, prior, s.learner, s.buffer, s.shield_margin, key
        )
    )(state, jax.random.PRNGKey(1))
    assert data.reward.shape == (MBPO_TINY["mbpo.rollouts"] * MBPO_TINY["mbpo.horizon"],)
    ended = np.asarray(data.done) == 1.0
    assert ended.any() and not ended.all()  # the tiny run's shield fires on some imagined actions, not all
    # the terminal reward is the prior's value Q_r^π̂(s, π̂(s)) and the state does not move (float32 round-off)
    obs = data.obs[ended]
    np.testing.assert_allclose(data.reward[ended], prior.reward_value(obs, prior.action(obs)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.next_obs[ended], obs)
    assert float(data.cost[ended].max()) == 0.0 and float(data.cost.min()) >= 0.0


@pytest.mark.slow
def test_loading_the_mbpo_policy_imports_no_trainer():
    code = (
        "import sys; from hardware.policies import load_policy; load_policy(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.startswith(('optax', 'saferl.agents.sooper.mbpo', "
        "'saferl.agents.sac.train', 'saferl.agents.sooper.train', 'saferl.data.buffer'))))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(mbpo_run())], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_mbpo_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    full = mbpo_run()
    part = copy_run(full, tmp_path)
    shutil.rmtree(part / "checkpoints" / str(EPISODES * SOOPER_EPISODE))
    resumed = train(None, None, steps=EPISODES * SOOPER_EPISODE, resume=part, progress=False, tensorboard=False)
    a, b = restore_agent(full)[1].state, restore_agent(resumed.run_dir)[1].state
    assert _equal(a, b)  # ensemble, buffers, cost critic, the learner's SAC state (params, targets, Adam, α), key
    metrics = lambda p: [line.split(",")[:3] for line in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert metrics(full) == metrics(resumed.run_dir)


def test_learner_config_errors_name_the_field():
    with pytest.raises(ValueError, match="learner must be one of mpc/mbpo, got 'ppo'"):
        SooperConfig(learner="ppo")
    for field, value in (("rollouts", 0), ("horizon", 1.5), ("updates", -1), ("batch_size", 0)):
        with pytest.raises(ValueError, match=rf"mbpo\.{field} must be an integer >= 1"):
            MBPOConfig(**{field: value})
    with pytest.raises(ValueError, match=r"mbpo.learning_rate must be a finite number > 0"):
        MBPOConfig(learning_rate=float("inf"))
    with pytest.raises(ValueError, match=r"mbpo.tau must be in \(0, 1\]"):
        MBPOConfig(tau=0.0)
    with pytest.raises(UserError, match=r"mbpo\.updates must be an integer >= 1"):
        apply_overrides(SooperConfig(), {"learner": "mbpo", "mbpo.updates": 0})
    assert SooperConfig().learner == "mpc"  # the default keeps the MPC learner


def test_the_sac_objective_handles_the_cost_where_the_planner_did():
    kinds = {name: mbpo.actor_constraint(registry.get(name).config_cls(learner="mbpo")).kind for name in METHODS}
    # sooper and sailr leave the cost to their shield, mbrl ignores it, crpo and primal_dual put it in the objective
    assert kinds == {
        "sooper": "none",
        "sailr": "none",
        "mbrl": "none",
        "crpo": "crpo",
        "primal_dual": "augmented_lagrangian",
    }


def test_crpo_objective_minimises_the_cost_while_the_critics_estimate_exceeds_the_budget():
    agent, run = restore_agent(mbpo_run())
    state = run.state
    prior = agent.current_prior(state.cost_q_params)
    data = mbpo.imagine_rollouts(
        agent.config,
        agent.rule,
        state.model,
        prior,
        state.learner,
        state.buffer,
        state.shield_margin,
        jax.random.PRNGKey(2),
    )
    crpo = mbpo.actor_constraint(registry.get("crpo").config_cls(learner="mbpo"))
    losses = {}
    for budget_q in (0.0, 1e6):  # every estimate Q_c ≥ 0 exceeds d_Q = 0; none exceeds 1e6
        update = mbpo.sac_update(agent.config.mbpo, prior, crpo, init_constraint(crpo), budget_q)
        _, (_, actor_loss, _) = jax.jit(update)(state.learner, data, jax.random.PRNGKey(3))
        losses[budget_q] = float(actor_loss)
    # over budget the actor minimises mean Q_c (≥ 0) + α·log π (α ≈ 0.01: small); within it, −Q_r of a prior whose
    # reward critic is positive on safe_cartpole (reward ≥ 0 per step)
    assert losses[0.0] > -1.0 and losses[1e6] < losses[0.0]


def test_cli_refuses_a_bad_learner_in_one_line(tmp_path):
    code, _, err = cli_in_process(
        ["train", "sooper", "--env", "safe_cartpole", "--set", "learner=ppo", "--out", str(tmp_path)]
    )
    assert code != 0 and "learner must be one of mpc/mbpo" in err
    assert not any(tmp_path.iterdir())  # refused before a run directory exists
