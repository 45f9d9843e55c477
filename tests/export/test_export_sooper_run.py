"""`saferl export RUN --format onnx --out DIR` of a tiny SOOPER run with `learner=mbpo` (`saferl/export/sooper.py`):
the directory the robot runs decides and acts as the run's loaded JAX policy (its actor behind the recovery
shield, `saferl.policies.load_policy`) on random states and costs spent on either side of where it fires."""

import functools
import json
import pathlib
import sys
import tempfile

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import SOOPER_ENV, SOOPER_EPISODE, SOOPER_TINY
from tiny_runs import cli_in_process, sooper_prior_run

from hardware.robot.onboard_shield import OnboardShieldedPolicy
from saferl.export.sooper import is_learned_sooper_run

# the sizes of tests/agents/test_sooper_mbpo.py, with a budget above what the recovery bound of this tiny run
# (pessimism 20 on a model fitted to one episode) asks on the states below (≈ 120-400 with its margin), so that
# the shield fires on some states and costs spent and not on others
BUDGET = 1000.0
MBPO_TINY = {
    "budget": BUDGET,
    "learner": "mbpo",
    "mbpo.rollouts": 64,
    "mbpo.horizon": 3,
    "mbpo.updates": 40,
    "mbpo.batch_size": 32,
}
STATES = 16  # simulator states: resets of safe_cartpole stepped 0-15 random actions
SIDE = 0.05  # cost spent either side of where the shield fires: beyond ONNX's 1e-4 relative disagreement with JAX


@functools.cache
def mbpo_run() -> pathlib.Path:
    """A tiny `saferl train sooper --set learner=mbpo` run: 1 episode of the prior, 1 of the actor."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="saferl-export-mbpo-"))
    sets = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in {**SOOPER_TINY, **MBPO_TINY}.items()]
    world = [f"{k}={v}" for k, v in {**SOOPER_ENV, "shift.preset": "heavy_pole"}.items()]
    args = ["train", "sooper", "--env", "safe_cartpole", "--steps", str(2 * SOOPER_EPISODE), "--quiet"]
    args += ["--logger", "none", "--out", str(out), "--set", f"prior={sooper_prior_run().run_dir}"]
    args += [a for s in sets for a in ("--set", s)] + [a for e in world for a in ("--set-env", e)]
    code, _, err = cli_in_process(args)
    assert code == 0, err[-3000:]
    (run_dir,) = out.iterdir()
    return run_dir


def simulator_states() -> list[np.ndarray]:
    """States of the run's env (native MuJoCo): reset with seed i, then i uniform random actions."""
    import envs
    from envs.native import NativeTwin

    env, rng, states = envs.make("safe_cartpole", **SOOPER_ENV), np.random.default_rng(0), []
    for seed in range(STATES):
        twin = NativeTwin(env, seed)
        obs = twin.reset()
        for _ in range(seed):
            obs = twin.step(rng.uniform(-1, 1, 1).astype(np.float32))[0]
        states.append(np.asarray(obs, np.float32))
    return states


@pytest.mark.slow
def test_the_exported_mbpo_run_decides_and_acts_as_its_loaded_policy(tmp_path):
    from saferl.policies import load_policy

    run_dir = mbpo_run()
    code, out, err = cli_in_process(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "onboard")])
    assert code == 0, err[-3000:]
    assert "shielded policy" in out
    manifest = json.loads((tmp_path / "onboard" / "shield.json").read_text())
    assert manifest["rule"] == "recovery" and manifest["budget"] == BUDGET and manifest["margin"] >= 0
    assert manifest["info"]["learner"] == "mbpo" and "lookahead" in manifest["files"]

    onboard = OnboardShieldedPolicy(tmp_path / "onboard")
    policy = load_policy(run_dir)  # the actor behind the recovery shield, in JAX
    fires = []
    for obs in simulator_states():
        action = onboard._run("learner", obs=obs[None])
        need = onboard._run("lookahead", obs=obs, action=action[0]) + onboard.margin
        threshold = float(onboard.budget - need)
        for cost_spent in (0.0, max(threshold - SIDE, 0.0), max(threshold + SIDE, 0.0)):
            carry = policy.init_carry().replace(cost_spent=np.float32(cost_spent))
            jax_action, carry = policy.act(carry, obs, jax.random.PRNGKey(0))
            onboard_action, onboard_fires = onboard.decide(obs, cost_spent)
            assert onboard_fires == bool(carry.memory.interventions == 1), (obs, cost_spent)
            np.testing.assert_allclose(onboard_action, np.asarray(jax_action), atol=1e-5)  # float32 MLPs
            fires.append(onboard_fires)
    assert 0 < np.mean(fires) < 1  # both outcomes compared


def test_only_sooper_runs_with_a_learned_actor_export_as_a_shielded_policy():
    from saferl.agents.sac import SACConfig
    from saferl.agents.sooper.config import SooperConfig

    assert is_learned_sooper_run(SooperConfig(learner="mbpo"))
    assert not is_learned_sooper_run(SooperConfig())  # mpc: it plans every decision
    assert not is_learned_sooper_run(SACConfig())
