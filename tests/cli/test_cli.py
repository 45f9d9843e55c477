"""The `saferl` CLI: every command end to end on tiny runs (PPO: train, export; PETS: eval, render, export
refused), `--data`, and one-line errors for bad input. The PPO eval/render paths are the same code with
`action_repeat` 1 (tests/policies/test_evaluate.py)."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
from tiny_configs import ENV_TINY, PETS_EPISODE, PETS_TINY, PPO_CHUNK, PPO_TINY
from tiny_runs import copy_run, pets_run, sooper_prior_run

from saferl.cli.main import main


def _sets(config, flag):
    return [x for k, v in config.items() for x in (flag, f"{k}={json.dumps(v)}")]


def run_cli(capsys, *args):
    """(exit code, stdout, stderr) of `saferl args...` run in-process."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_runs")
    args = [
        "train",
        "ppo",
        "--env",
        "pendulum",
        "--steps",
        2 * PPO_CHUNK,
        "--seed",
        1,
        "--out",
        out,
        "--quiet",
        *_sets(PPO_TINY, "--set"),
        *_sets(ENV_TINY, "--set-env"),
    ]
    main([str(a) for a in args])
    (path,) = out.iterdir()
    return path


def test_train_prints_where_the_run_metrics_and_plots_are(run_dir, capsys):
    code, out, _ = run_cli(capsys, "train", "--resume", run_dir, "--steps", 3 * PPO_CHUNK, "--quiet")
    assert code == 0
    assert f"run directory: {run_dir}" in out and "metrics.csv" in out and "return.png" in out
    assert json.loads(out.split("final:")[1])["env_steps"] == 3 * PPO_CHUNK


def test_envs_lists_every_env_with_sizes_and_budget(capsys):
    import envs

    code, out, _ = run_cli(capsys, "envs")
    assert code == 0
    for name in envs.names():
        assert name in out
    assert "budget" in out


@pytest.fixture(scope="module")
def pets_dir(tmp_path_factory):
    """A copy of the shared tiny PETS run (eval writes into it)."""
    return copy_run(pets_run(3).run_dir, tmp_path_factory.mktemp("cli_pets"))


def test_eval_of_an_mpc_policy_writes_mean_return_and_cost(pets_dir, capsys):
    code, out, err = run_cli(capsys, "eval", pets_dir, "--episodes", 2)
    assert code == 0, err
    assert out.startswith("pets on pendulum, 2 episodes: return")
    result = json.loads((pets_dir / "eval.json").read_text())
    assert result["episodes"] == 2 and len(result["returns"]) == 2 and result["action_repeat"] == 2
    assert result["mean_cost"] == 0.0  # pendulum has no constraint
    # a 20-step pendulum episode earns at most 20 (reward ≤ 1 per step) and at least -20 · 1.1 (cos and costs)
    assert all(-25.0 < r <= 20.0 for r in result["returns"])


@pytest.mark.slow
def test_render_of_an_mpc_policy_writes_a_video(pets_dir, tmp_path, capsys):
    # the planner of an env task (as for SoftAE's zero-shot videos): its markers are drawn (none for swing_up)
    code, out, err = run_cli(
        capsys, "render", pets_dir, "--out", tmp_path / "ep.mp4", "--steps", 6, "--task", "swing_up"
    )
    assert code == 0, err
    written = pathlib.Path(out.split("written:")[1].strip())
    assert written.exists() and written.stat().st_size > 0


@pytest.mark.slow
def test_export_writes_onnx(run_dir, tmp_path, capsys):
    code, _out, err = run_cli(capsys, "export", run_dir, "--format", "onnx", "--out", tmp_path / "p.onnx")
    assert code == 0, err
    assert (tmp_path / "p.onnx").stat().st_size > 0


@pytest.mark.slow
def test_export_of_a_prior_writes_a_run_directory_sooper_reads_as_the_prior(tmp_path, capsys):
    from saferl.agents.sooper.prior import load_prior

    sac_dir, out = sooper_prior_run().run_dir, tmp_path / "prior"
    code, printed, err = run_cli(capsys, "export", sac_dir, "--format", "prior", "--out", out)
    assert code == 0, err
    assert f"--set prior={out}" in printed
    leaves = [jax.tree.leaves(load_prior(d)[0]) for d in (sac_dir, out)]
    assert all(np.array_equal(a, b) for a, b in zip(*leaves, strict=True))
    code, _, err = run_cli(capsys, "export", sac_dir, "--format", "prior", "--out", out)  # exists: refused
    assert code == 2 and "exists; give a new directory" in err
    code, _, err = run_cli(capsys, "export", out.parent / "nowhere", "--format", "prior", "--out", tmp_path / "p2")
    assert code == 2 and "not a run directory" in err and not (tmp_path / "p2").exists()


def test_export_of_an_mpc_policy_is_refused_in_one_line(pets_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", pets_dir, "--out", tmp_path / "p.onnx")
    lines = [line for line in err.splitlines() if line.strip() and "warp" not in line]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: pets policies are MPC planners and cannot be exported to ONNX;")
    assert not (tmp_path / "p.onnx").exists()


@pytest.fixture(scope="module")
def pendulum_recording(tmp_path_factory):
    """A recording directory of 2 pendulum episodes (obs 3, action 1), as `saferl-deploy run` writes it."""
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "data"))
    from recording_files import write_episode

    directory = tmp_path_factory.mktemp("recording")
    rng = np.random.default_rng(0)
    for index in range(2):
        obs = rng.normal(size=(31, 3)).astype(np.float32)
        write_episode(directory, index, obs, np.repeat(rng.uniform(-1, 1, (15, 1)), 2, axis=0))
    return directory


def test_pets_trains_on_recorded_data(pendulum_recording, tmp_path, capsys):
    code, _out, err = run_cli(
        capsys,
        "train",
        "pets",
        "--env",
        "pendulum",
        "--steps",
        PETS_EPISODE,
        "--out",
        tmp_path,
        "--data",
        pendulum_recording,
        "--quiet",
        *_sets(PETS_TINY, "--set"),
        "--set-env",
        f"episode_length={PETS_EPISODE}",
    )
    assert code == 0, err
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "config.json").read_text())["data_dir"] == str(pendulum_recording.resolve())
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    # 2 episodes × 30 steps with actions held in pairs: 2 × 29 two-step windows, 2 × 15 of them under one
    # action; plus the 10 decisions of the random episode, all in the buffer before the first fit
    assert float(first[header.index("buffer_size")]) == 2 * 15 + 10


@pytest.mark.parametrize(
    "algo, env, message",
    [
        ("ppo", "pendulum", "ppo cannot use --data: it is on-policy"),
        ("pets", "safe_cartpole", "recorded obs size 3 and action size 1 do not match env 'safe_cartpole' (obs 5"),
    ],
)
def test_unusable_recorded_data_is_one_error_line_and_creates_nothing(
    algo, env, message, pendulum_recording, tmp_path, capsys
):
    code, _, err = run_cli(capsys, "train", algo, "--env", env, "--data", pendulum_recording, "--out", tmp_path)
    lines = [line for line in err.splitlines() if line.strip() and "warp" not in line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "nope", "--env", "pendulum"], "unknown algorithm 'nope'"),
        (["train", "ppo", "--env", "nope"], "unknown env 'nope'"),
        (["train", "ppo", "--env", "pendulum", "--set", "lr=1"], "unknown config key 'lr'"),
        (["train", "ppo", "--env", "pendulum", "--set", "learning_rate=fast"], "expected a number"),
        (["train", "ppo", "--env", "pendulum", "--set", "num_envs=0"], "num_envs must be >= 1"),
        (["train", "ppo", "--env", "pendulum", "--set-env", "mass=1"], "unknown env key 'mass'"),
        (["train", "ppo", "--env", "pendulum", "--set", "noequals"], "key=value"),
        (["train", "ppo", "--env", "pendulum", "--steps", "many"], "--steps"),
        (["train", "sac", "--env", "pendulum", "--data", "/nonexistent/dir"], "no such directory"),
        (["train", "pets", "--env", "pendulum", "--data", "/"], "no episode_*.npz files in /"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["render", "/nonexistent/run", "--out", "x.mp4"], "does not exist"),
        (["export", "/nonexistent/run", "--out", "x.onnx"], "does not exist"),
        (["export", "/nonexistent/run", "--format", "tflite", "--out", "x"], "not supported"),
        (["train", "ppo", "--env", "pendulum", "--bogus"], "No such option"),
        (["train", "sac", "--env", "safe_cartpole", "--constraint", "lagrangien"], "not a constraint handler"),
        (["train", "sac", "--env", "pendulum", "--constraint", "lagrangian"], "needs an env with a cost budget"),
        (["train", "sac", "--env", "safe_cartpole", "--set-env", "randomization.mass_scale=[1.2,0.8]"], "mass_scale"),
        (["train", "sac", "--env", "safe_cartpole", "--set-env", "shift.preset=heavy_robot"], "heavy_pole"),
        (["train", "sac", "--env", "safe_cartpole", "--set-env", "action_delay=-1"], "action_delay"),
        (["train", "sac", "--env", "safe_cartpole", "--set-env", "wind=3"], "training-world keys"),
        (["train", "sooper", "--env", "safe_cartpole"], "needs a prior"),
        (["train", "sooper", "--env", "safe_cartpole", "--set", "prior=/nonexistent/run"], "not a run directory"),
        (["train", "sailr", "--env", "safe_cartpole", "--set", "shield=sometimes"], "shield must be one of"),
    ],
)
def test_bad_input_gives_one_error_line_and_nonzero_exit(args, message, capsys, tmp_path):
    code, _, err = run_cli(capsys, *args, *(["--out", tmp_path] if args[0] == "train" else []))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "warp" not in line]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not list(tmp_path.iterdir())  # nothing was created for a rejected command


def test_corrupt_config_json_is_one_error_line(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "config.json").write_text("{")
    code, _, err = run_cli(capsys, "eval", copy)
    assert code == 2 and "corrupt" in err and "Traceback" not in err


def test_console_script_reports_user_errors_without_traceback():
    script = pathlib.Path(sys.executable).parent / "saferl"
    done = subprocess.run([str(script), "train", "ppo", "--env", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error: unknown env 'nope'" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    """A tiny constrained SAC run on safe_cartpole in a randomised, noisy, delayed, shifted world."""
    from tiny_configs import SAC_CHUNK, SAC_TINY

    out = tmp_path_factory.mktemp("cli_world")
    world = {
        "episode_length": 40,
        "randomization.mass_scale": [0.8, 1.2],
        "obs_noise_std": 0.01,
        "action_delay": 1,
        "shift.preset": "weak_motor",
    }
    args = [
        "train",
        "sac",
        "--env",
        "safe_cartpole",
        "--steps",
        SAC_CHUNK,
        "--out",
        out,
        "--quiet",
        "--constraint",
        "augmented_lagrangian",
        *_sets(SAC_TINY, "--set"),
        *_sets(world, "--set-env"),
    ]
    main([str(a) for a in args])
    (path,) = out.iterdir()
    return path


@pytest.mark.slow
def test_train_saves_the_training_world_and_the_constraint_in_the_run_config(world_run):
    config = json.loads((world_run / "config.json").read_text())
    world = config["training_env"]
    assert world["randomization"]["mass_scale"] == [0.8, 1.2] and world["randomization"]["friction_scale"] == [1, 1]
    assert world["obs_noise_std"] == 0.01 and world["action_delay"] == 1
    assert world["shift"]["preset"] == "weak_motor"
    assert config["env_config"]["episode_length"] == 40
    assert config["algo_config"]["constraint"]["kind"] == "augmented_lagrangian"


@pytest.mark.slow
def test_eval_runs_in_the_training_world_and_on_a_shift(world_run, capsys):
    code, out, err = run_cli(capsys, "eval", world_run, "--episodes", 2)
    assert code == 0, err
    own = json.loads((world_run / "eval.json").read_text())
    assert own["training_env"]["shift"]["preset"] == "weak_motor"  # the world it trained in ...
    assert own["training_env"]["randomization"]["mass_scale"] == [1, 1]  # ... without randomisation
    code, out, err = run_cli(capsys, "eval", world_run, "--episodes", 2, "--shift", "heavy_pole")
    assert code == 0, err
    shifted = json.loads((world_run / "eval-heavy_pole.json").read_text())
    assert shifted["training_env"]["shift"]["preset"] == "heavy_pole" and "shift: heavy_pole" in out
    assert (world_run / "eval.json").exists()  # the shifted evaluation did not overwrite the own one
    code, _, err = run_cli(capsys, "eval", world_run, "--shift", "mass_scale=1.3", "--episodes", 1)
    assert (
        code == 0
        and json.loads((world_run / "eval-mass_scale-1.3.json").read_text())["training_env"]["shift"]["mass_scale"]
        == 1.3
    )
    code, _, err = run_cli(capsys, "eval", world_run, "--shift", 'body_mass_scale={"pole": 2}', "--episodes", 1)
    assert code == 0, err  # the dict form documented in --help
    written = json.loads((world_run / "eval-body_mass_scale-pole-2.json").read_text())
    assert written["training_env"]["shift"]["body_mass_scale"] == [["pole", 2.0]]
    code, _, err = run_cli(capsys, "eval", world_run, "--shift", "heavy_robot")
    assert code == 2 and "no such shift preset" in err and "heavy_pole" in err
    code, _, err = run_cli(capsys, "eval", world_run, "--shift", "heavy_pole", "--shift", "weak_motor")
    assert code == 2 and "one preset at a time" in err


def test_help_names_the_constraint_handlers_and_world_keys(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    for word in ("--constraint", "augmented_lagrangian", "randomization", "action_delay", "shift.preset"):
        assert word in out


@pytest.mark.slow
def test_train_of_sooper_prints_the_safety_margin_and_normalised_return(tmp_path, capsys):
    from tiny_configs import SOOPER_EPISODE
    from tiny_runs import sooper_run

    part = copy_run(sooper_run().run_dir, tmp_path)
    shutil.rmtree(part / "checkpoints" / str(3 * SOOPER_EPISODE))
    code, out, _ = run_cli(capsys, "train", "--resume", part, "--quiet")
    assert code == 0
    summary = json.loads((part / "summary.json").read_text())
    assert f"summary:       {part / 'summary.json'}" in out
    assert f"safety margin {summary['safety_margin']:g} (budget 5;" in out
    assert f"normalised return {summary['normalized_return']:.2f}" in out and "over 3 real episodes" in out
