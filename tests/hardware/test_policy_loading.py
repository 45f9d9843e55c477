"""`hardware.policies.load_policy`: saferl's one registry behind hardware's one-line errors; what the deploy
side imports, at import time and when it loads a PPO, SAC, PETS and SOOPER policy (in a fresh interpreter).

Loading a PPO, SAC, PETS and SOOPER policy in a fresh interpreter imports none of TRAINER: a policy is rebuilt
from its run's network config and, of the last checkpoint, only the parameters it needs (as brax loads a policy
from network config + params), never restored into a trainer's state. The registry names each algorithm's
trainer and policy loader lazily (`saferl.registry.Lazy`), so looking an algorithm up imports neither; the
policy modules (`saferl.agents.*.policy`) import networks, configs, the ensemble and the planners, no trainer,
optimiser (optax) or replay buffer. Nor does loading import the training *driver*: the loop, `saferl train`'s
run/seeds/context, progress, plots, TensorBoard, the CLI."""

import json
import pathlib
import subprocess
import sys

import pytest

from hardware.policies import load_policy
from saferl.errors import UserError


def test_a_missing_run_dir_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match=r"run directory '.*nope' not found"):
        load_policy(tmp_path / "nope")


@pytest.mark.parametrize(
    "config, message",
    [
        (None, "config.json is missing"),
        ("{not json", "not valid JSON"),
        ({"env": "pendulum"}, r"missing keys \['algo'\]"),
        ({"algo": "no_such_algo"}, "unknown algorithm 'no_such_algo'; available: .*pets"),
    ],
)
def test_unusable_run_dirs_are_user_errors(tmp_path, config, message):
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(UserError, match=message):
        load_policy(tmp_path)


def test_importing_the_deploy_side_imports_no_training_code():
    code = (
        "import sys, hardware.policies, hardware.runner, hardware.cli; import saferl.policies.episode; "
        "print(sorted(m for m in sys.modules if m.startswith(('saferl.training', 'saferl.agents', 'optax'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# modules of `saferl train` that a deployment never needs
DRIVER = (
    "saferl.training.loop",
    "saferl.training.run",
    "saferl.training.seeds",
    "saferl.training.context",
    "saferl.training.progress",
    "saferl.training.plots",
    "saferl.cli",
    "tensorboardX",
    "matplotlib",
)
# what restoring a trainer's state would bring in (see the module docstring)
TRAINER = (
    "saferl.agents.ppo.train",
    "saferl.agents.sac.train",
    "saferl.agents.pets.train",
    "saferl.agents.sooper.train",
    "saferl.agents.softae.train",
    "optax",
    "saferl.training.logger",
    "saferl.agents.modelfree.common",
    "saferl.agents.pets.agent",
    "saferl.agents.sooper.agent",
    "saferl.agents.sooper.critic",
    "saferl.agents.softae.agent",
    "saferl.data.buffer",
)

_LOAD = """
import json, sys
from hardware.policies import load_policy
algos = [load_policy(run_dir).algo for run_dir in sys.argv[1:]]
print(json.dumps({"algos": algos, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def loaded_in_a_fresh_interpreter():
    """(algorithms loaded, sys.modules after loading) of the deploy side loading the shared tiny PPO, SAC
    (SOOPER's prior), PETS and SOOPER runs through `hardware.policies.load_policy` in a new interpreter."""
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_runs import pets_run, ppo_run, sooper_prior_run, sooper_run

    runs = [ppo_run().run_dir, sooper_prior_run().run_dir, pets_run(3).run_dir, sooper_run().run_dir]
    done = subprocess.run([sys.executable, "-c", _LOAD, *map(str, runs)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["algos"], set(out["modules"])


def _imported(modules, names):
    """The modules that are one of `names` or inside one of them."""
    return sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in names))


@pytest.mark.slow
def test_loading_ppo_sac_pets_and_sooper_policies_imports_no_training_driver(loaded_in_a_fresh_interpreter):
    algos, modules = loaded_in_a_fresh_interpreter
    assert algos == ["ppo", "sac", "pets", "sooper"]
    assert "saferl.training.restore" in modules and "saferl.agents.sooper.shield" in modules  # it did load them
    assert _imported(modules, DRIVER) == []


@pytest.mark.slow
def test_loading_a_policy_imports_no_trainer(loaded_in_a_fresh_interpreter):
    _, modules = loaded_in_a_fresh_interpreter
    assert _imported(modules, TRAINER) == []
