"""`saferl-deploy run` on a SOOPER run: the shielded MPC learner (its carry: cost spent from the robot's costs,
planner memory, shield interventions) drives the simulated safe cart-pole robot for a whole recorded episode."""

import pathlib
import sys

import numpy as np
import pytest
from bridge_helpers import start_server, stop_server

from hardware import cli
from hardware.recording import episode_files, load_episode, read_metadata

STEPS = 30


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_runs import sooper_run

    run_dir = sooper_run().run_dir
    proc, address = start_server(["-m", "hardware.cli", "sim", "safe_cartpole", "--rate", "100", "--watchdog", "30"])
    try:
        record_dir = tmp_path_factory.mktemp("sooper_rec")
        code = cli.main(["run", str(run_dir), "--robot", address, "--max-steps", str(STEPS), "--seed", "2",
                         "--record", str(record_dir), "--quiet"])
    finally:
        stop_server(proc)
    return code, run_dir, record_dir


def test_deploy_runs_the_shielded_sooper_policy_on_the_robot(deployment):
    code, _, record_dir = deployment
    assert code == 0
    meta = read_metadata(record_dir)
    (summary,) = meta["episodes"]
    assert summary["steps"] == STEPS and summary["fault"] == ""
    episode = load_episode(episode_files(record_dir)[0])
    assert episode["action"].shape[1] == 1 and np.abs(episode["action"]).max() <= 1.0
    assert np.isfinite(episode["obs"]).all() and (episode["cost"] >= 0).all()
