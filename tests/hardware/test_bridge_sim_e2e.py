"""End to end on loopback: `saferl-deploy sim pendulum` in its own process, the policy side driven in-process
through the CLI's `drive`; recordings replayed on the native simulator; on-board ONNX mode."""

import json

import numpy as np
import pytest
from bridge_helpers import TinyPolicy, start_server, stop_server

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

    policy = TinyPolicy(3, 1)
    path = export_apply_onnx(policy.apply, policy.params, 3, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return policy, path


@pytest.fixture(scope="module")
def sim_server(onnx_policy):
    # 100 Hz is 5x real time for pendulum (ctrl_dt 0.05 s); short episodes keep the test fast
    proc, address = start_server(["-m", "hardware.cli", "sim", "pendulum", "--rate", "100", "--watchdog", "10",
                                  "--onboard", str(onnx_policy[1])])
    yield address
    assert proc.poll() is None
    stop_server(proc)


@pytest.fixture(scope="module")
def recording(sim_server, tmp_path_factory):
    record_dir = tmp_path_factory.mktemp("rec")
    config = RunConfig(episodes=2, seed=5, max_steps=EPISODE_STEPS, record_dir=str(record_dir))
    summaries = cli.drive(TinyPolicy(3, 1), sim_server, config, live=True)
    return record_dir, summaries


def test_run_completes_episodes_and_records_them(recording):
    record_dir, summaries = recording
    assert [s.steps for s in summaries] == [EPISODE_STEPS, EPISODE_STEPS]
    assert all(s.fault == "" for s in summaries)
    meta = read_metadata(record_dir)
    assert meta["robot"]["name"] == "pendulum-sim" and len(meta["episodes"]) == 2
    batch = load_recordings(record_dir)
    # a state the policy side missed (CONFLATE keeps only the newest) is a gap, never a stitched transition
    transitions = sum(s.steps - s.gaps for s in summaries)
    assert batch["obs"].shape == (transitions, 3) and batch["action"].shape == (transitions, 1)
    assert transitions >= EPISODE_STEPS  # most states seen even when other jobs load the machine
    episode = load_episode(episode_files(record_dir)[0])
    chained = np.diff(episode["seq"]) == 1
    np.testing.assert_array_equal(episode["obs"][1:][chained], episode["next_obs"][:-1][chained])
    json.dumps(meta)  # metadata stays plain JSON


def test_recorded_trajectories_match_the_simulator(recording):
    record_dir, summaries = recording
    env = envs.make("pendulum")
    for path, summary in zip(episode_files(record_dir), summaries):
        episode = load_episode(path)
        twin = NativeTwin(env, summary.seed)
        np.testing.assert_allclose(twin.reset(), episode["obs"][0], atol=1e-6)
        # the robot reports every applied action (policy, hold or safe); gaps break the chain, so replay
        # the recorded segment up to the first gap
        chained = np.concatenate([[True], np.diff(episode["seq"]) == 1])
        length = int(np.argmin(chained)) if not chained.all() else chained.size
        assert length >= 10
        for t, action in enumerate(episode["action"][:length]):
            obs, reward, cost, _ = twin.step(action)
            # same native MuJoCo, same float32 actions: identical up to float32 rounding of obs
            np.testing.assert_allclose(obs, episode["next_obs"][t], atol=1e-5)
            np.testing.assert_allclose(reward, episode["reward"][t], atol=1e-5)


def test_policy_actions_in_the_recording_are_the_policy_outputs(recording):
    record_dir, _ = recording
    policy = TinyPolicy(3, 1)
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
