"""`hardware.policies.load_policy`: saferl's one registry behind hardware's one-line errors; the deploy side
imports no training code."""

import json
import subprocess
import sys

import pytest

from hardware.policies import load_policy
from saferl.errors import UserError


def test_a_missing_run_dir_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="run directory '.*nope' not found"):
        load_policy(tmp_path / "nope")


@pytest.mark.parametrize("config, message", [
    (None, "config.json is missing"), ("{not json", "not valid JSON"), ({"env": "pendulum"}, r"missing keys \['algo'\]"),
    ({"algo": "no_such_algo"}, "unknown algorithm 'no_such_algo'; available: .*pets"),
])
def test_unusable_run_dirs_are_user_errors(tmp_path, config, message):
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(UserError, match=message):
        load_policy(tmp_path)


def test_the_deploy_side_imports_no_training_code():
    code = ("import sys, hardware.policies, hardware.runner, hardware.cli; import saferl.policies.episode; "
            "print(sorted(m for m in sys.modules if m.startswith('saferl.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
