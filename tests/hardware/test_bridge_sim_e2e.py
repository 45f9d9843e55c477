"""End to end on loopback: `saferl-deploy sim pendulum` in its own process, the policy side driven in-process
through the CLI's `drive`; recordings replayed on the native simulator; on-board ONNX mode; a PETS run
deployed and its recording trained on."""

import json
import pathlib
import sys

import numpy as np
import pytest
from bridge_helpers import start_server, stop_server, tiny_policy

import envs
from envs.native import NativeTwin
from hardware import cli
from hardware.client import RobotClient
from hardware.recording import episode_files, load_episode, load_recordings, read_metadata
from hardware.runner import RunConfig

EPISODE_STEPS = 60


@pytest.fixture(scope="module")
def onnx_policy(tmp_path_factory):
    from saferl.export.onnx import export_apply_onnx

    policy = tiny_policy(3, 1)
    path = export_apply_onnx(policy.apply, policy.params, 3, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return policy, path


@pytest.fixture(scope="module")
def sim_server(onnx_policy):
    # 100 Hz is 5x real time for pendulum (ctrl_dt 0.05 s); short episodes keep the test fast
    proc, address = start_server(
        ["-m", "hardware.cli", "sim", "pendulum", "--rate", "100", "--watchdog", "10", "--onboard", str(onnx_policy[1])]
    )
    yield address
    assert proc.poll() is None
    stop_server(proc)


@pytest.fixture(scope="module")
def recording(sim_server, tmp_path_factory):
    record_dir = tmp_path_factory.mktemp("rec")
    config = RunConfig(episodes=2, seed=5, max_steps=EPISODE_STEPS, record_dir=str(record_dir))
    summaries = cli.drive(tiny_policy(3, 1), sim_server, config, live=True)
    return record_dir, summaries


@pytest.mark.slow
def test_run_completes_episodes_and_records_them(recording):
    record_dir, summaries = recording
    # the policy side stops at the first state with step >= max_steps; where it missed state 60 (CONFLATE keeps
    # only the newest, a gap) that is a later one: a load-dependent count, bounded by the gaps
    assert len(summaries) == 2
    assert all(EPISODE_STEPS <= s.steps <= EPISODE_STEPS + s.gaps for s in summaries), summaries
    assert all(s.fault == "" for s in summaries)
    meta = read_metadata(record_dir)
    assert meta["robot"]["name"] == "pendulum-sim" and len(meta["episodes"]) == 2
    batch = load_recordings(record_dir)
    # a state the policy side missed (CONFLATE keeps only the newest) is a gap, never a stitched transition:
    # a run of k missed states loses the k + 1 transitions that touch them
    for s in summaries:
        lost = s.steps - s.transitions
        assert (lost == 0) if s.gaps == 0 else (s.gaps + 1 <= lost <= 2 * s.gaps)
    transitions = sum(s.transitions for s in summaries)
    assert batch["obs"].shape == (transitions, 3) and batch["action"].shape == (transitions, 1)
    assert transitions >= EPISODE_STEPS  # most states seen even when other jobs load the machine
    episode = load_episode(episode_files(record_dir)[0])
    chained = np.diff(episode["seq"]) == 1
    np.testing.assert_array_equal(episode["obs"][1:][chained], episode["next_obs"][:-1][chained])
    json.dumps(meta)  # metadata stays plain JSON


@pytest.mark.slow
def test_recorded_trajectories_match_the_simulator(recording):
    record_dir, summaries = recording
    env = envs.make("pendulum")
    for path, summary in zip(episode_files(record_dir), summaries, strict=False):
        episode = load_episode(path)
        twin = NativeTwin(env, summary.seed)
        reset_obs = twin.reset()
        if summary.gaps == 0:  # every state seen: the recording starts at the episode's reset
            np.testing.assert_allclose(reset_obs, episode["obs"][0], atol=1e-6)
        # the robot reports every applied action (policy, hold or safe); gaps break the chain, so replay each
        # chained segment from its first recorded state (pendulum: obs = [cos θ, sin θ, θ̇] is the whole state);
        # how many gaps a loaded machine makes varies, every recorded transition is replayed all the same
        chained = np.concatenate([[False], np.diff(episode["seq"]) == 1])
        starts = np.flatnonzero(~chained)
        ends = np.append(starts[1:], chained.size)
        assert ends.sum() - starts.sum() == summary.transitions >= 10
        for start, end in zip(starts, ends, strict=True):
            if start > 0 or summary.gaps > 0:  # else the twin is at the episode's own reset, bit for bit
                cos, sin, speed = episode["obs"][start].astype(np.float64)
                twin.set_state(np.array([np.arctan2(sin, cos)]), np.array([speed]))
            for t in range(start, end):
                obs, reward, _cost, _ = twin.step(episode["action"][t])
                # same native MuJoCo, same float32 actions: identical up to float32 rounding of obs
                np.testing.assert_allclose(obs, episode["next_obs"][t], atol=1e-5)
                np.testing.assert_allclose(reward, episode["reward"][t], atol=1e-5)


def test_policy_actions_in_the_recording_are_the_policy_outputs(recording):
    record_dir, _ = recording
    policy = tiny_policy(3, 1)
    episode = load_episode(episode_files(record_dir)[0])
    fresh = episode["source"] == 0
    assert fresh.mean() > 0.5  # most steps driven by a fresh action even on a loaded machine
    expected = np.asarray(policy.apply(policy.params, episode["obs"][fresh]))
    np.testing.assert_allclose(episode["action"][fresh], expected, atol=1e-6)


def test_onboard_onnx_policy_drives_the_robot_under_the_same_checks(sim_server, onnx_policy):
    policy, _ = onnx_policy
    with RobotClient(sim_server) as client:
        assert client.info["onboard"] is True
        client.reset(seed=2)
        episode = client.status()["episode"]
        client.start(mode="onboard")
        previous = client.wait_for_state(episode=episode, mode="onboard")
        checked = 0
        while checked < 20:
            state = client.recv_state(1.0)
            if state.body["step"] == previous.body["step"] + 1 and state.body["action_source"] == "onboard":
                expected = np.asarray(policy.apply(policy.params, previous.body["obs"][None]))[0]
                np.testing.assert_allclose(state.body["action"], expected, atol=1e-5)  # ONNX vs JAX float32
                checked += 1
            previous = state
        client.stop()


# --- a PETS run through the bridge: `saferl-deploy run` drives the robot with the MPC planner (actions held
# for the planner's action_repeat), and its recording feeds a new PETS run (`saferl train --data`) -----------

PETS_STEPS = 30


@pytest.fixture(scope="module")
def pets_deployment(sim_server, tmp_path_factory):
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_runs import pets_run

    run_dir = pets_run(3).run_dir
    record_dir = tmp_path_factory.mktemp("pets_rec")
    code = cli.main(
        [
            "run",
            str(run_dir),
            "--robot",
            sim_server,
            "--max-steps",
            str(PETS_STEPS),
            "--seed",
            "3",
            "--record",
            str(record_dir),
            "--quiet",
        ]
    )
    return code, run_dir, record_dir


@pytest.mark.slow
def test_deploy_runs_a_pets_policy_on_the_robot_holding_each_planned_action(pets_deployment):
    code, _, record_dir = pets_deployment
    assert code == 0
    (summary,) = read_metadata(record_dir)["episodes"]
    assert summary["steps"] == PETS_STEPS and summary["fault"] == ""
    episode = load_episode(episode_files(record_dir)[0])
    assert np.abs(episode["action"]).max() <= 1.0
    chained = np.diff(episode["seq"]) == 1
    changes = int((np.abs(np.diff(episode["action"][:, 0])) > 0)[chained].sum())
    # one plan per 2 robot steps: at most one change per decision (+1 per missed state, which re-plans);
    # a per-step policy would change its action at nearly every one of the ~29 steps
    assert changes <= PETS_STEPS // 2 + summary["gaps"] + 1, changes


@pytest.mark.slow
def test_a_bridge_recording_feeds_pets_training_before_its_first_fit(pets_deployment, tmp_path):
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_configs import PETS_ENV, PETS_EPISODE, PETS_TINY

    from saferl.data.recordings import load_recordings
    from saferl.training.run import train

    _, _, record_dir = pets_deployment
    windows = load_recordings(record_dir, action_repeat=PETS_TINY["action_repeat"])["reward"].size
    assert windows >= PETS_STEPS // 4  # held actions give 2-step transitions even with some missed states
    result = train(
        "pets",
        "pendulum",
        steps=PETS_EPISODE,
        overrides=PETS_TINY,
        env_overrides=PETS_ENV,
        out=tmp_path,
        data=record_dir,
        progress=False,
        tensorboard=False,
    )
    assert result.metrics["buffer_size"] == windows + PETS_EPISODE // PETS_TINY["action_repeat"]
