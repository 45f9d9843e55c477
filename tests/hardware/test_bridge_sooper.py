"""`saferl-deploy run` on a SOOPER run: the shielded MPC learner (its carry: cost spent from the robot's costs,
planner memory, shield interventions) drives the simulated safe cart-pole robot for a whole recorded episode."""

import itertools
import pathlib
import sys

import numpy as np
import pytest
from bridge_helpers import start_server, stop_server

from hardware import cli, runner
from hardware.recording import episode_files, load_episode, read_metadata
from hardware.runner import make_actor

STEPS = 30


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_runs import sooper_run

    run_dir = sooper_run().run_dir
    actors = []

    def logged_actor(policy, seed):
        actors.append(_LoggedActor(make_actor(policy, seed)))
        return actors[-1]

    proc, address = start_server(["-m", "hardware.cli", "sim", "safe_cartpole", "--rate", "100", "--watchdog", "30"])
    try:
        record_dir = tmp_path_factory.mktemp("sooper_rec")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner, "make_actor", logged_actor)
            code = cli.main(
                [
                    "run",
                    str(run_dir),
                    "--robot",
                    address,
                    "--max-steps",
                    str(STEPS),
                    "--seed",
                    "2",
                    "--record",
                    str(record_dir),
                    "--quiet",
                ]
            )
    finally:
        stop_server(proc)
    (actor,) = actors
    return code, run_dir, record_dir, actor


class _LoggedActor:
    """An `Actor` that logs each call: (obs, step, cost fed, action returned); `reset` starts a new log."""

    def __init__(self, actor):
        self.actor, self.calls = actor, [[]]

    def __getattr__(self, name):
        return getattr(self.actor, name)

    def reset(self, seed=0):
        self.actor.reset(seed)
        self.calls.append([])

    def __call__(self, obs, step, cost=0.0):
        action = self.actor(obs, step, cost)
        self.calls[-1].append((np.asarray(obs, np.float32), int(step), float(cost), np.asarray(action)))
        return action

    def episode_calls(self):
        """The calls since the last reset (the recorded episode; warm-up calls came before it)."""
        return self.calls[-1]


@pytest.mark.slow
def test_deploy_runs_the_shielded_sooper_policy_on_the_robot(deployment):
    code, _, record_dir, _ = deployment
    assert code == 0
    meta = read_metadata(record_dir)
    (summary,) = meta["episodes"]
    assert summary["steps"] == STEPS and summary["fault"] == ""
    episode = load_episode(episode_files(record_dir)[0])
    assert episode["action"].shape[1] == 1 and np.abs(episode["action"]).max() <= 1.0
    assert np.isfinite(episode["obs"]).all() and (episode["cost"] >= 0).all()


@pytest.mark.slow
def test_the_robot_applies_the_sooper_actors_decisions_and_its_costs_reach_the_actors_carry(deployment):
    """What crossed the bridge, checked against what the policy side's actor saw and answered (logged around
    `hardware.runner.make_actor`, so no state is guessed): every action the robot applied from the policy
    (source "policy") is one the SOOPER actor returned, the robot's cost of each step is the cost the actor fed
    into its carry, and the carry's cost spent is their sum. (Which answer a period applies, and which states
    the policy side misses, depend on the machine's load; these relations do not.)"""
    from hardware.protocol import ACTION_SOURCES

    _, _, record_dir, actor = deployment
    episode = load_episode(episode_files(record_dir)[0])
    calls = actor.episode_calls()
    assert calls[0][1] == 0 and all(a[1] <= b[1] for a, b in itertools.pairwise(calls))  # from step 0, in order
    answers = np.stack([action for *_, action in calls])
    assert len(np.unique(answers.round(5))) > 1  # the planner decides, not a constant
    from_policy = np.nonzero(episode["source"] == ACTION_SOURCES.index("policy"))[0]
    assert from_policy.size > 0 and from_policy[0] == 0  # the robot idles until the first action, then applies it
    for i in from_policy:
        assert np.abs(answers - episode["action"][i]).max(axis=1).min() <= 1e-6, (i, episode["action"][i])
    fed, matched, last_step = 0.0, 0, None
    for obs, step, cost, _ in calls:
        if last_step is not None and step > last_step:
            fed += cost
            reached = np.nonzero(np.all(episode["next_obs"] == obs, axis=1))[0]  # the transition into `step`
            if reached.size:
                assert np.float32(cost) == episode["cost"][reached[0]], step
                matched += 1
        last_step = step if last_step is None else max(last_step, step)
    assert matched >= 1
    assert float(actor.carry.cost_spent) == pytest.approx(fed)
