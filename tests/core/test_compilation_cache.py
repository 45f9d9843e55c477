"""Where the persistent compilation cache lives: outside the clone, overridable and switchable off."""

import subprocess
import sys

import pytest

from saferl import compilation_cache


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("SAFERL_JAX_CACHE", "XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_is_the_user_cache_directory(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    assert compilation_cache.cache_dir() == tmp_path / ".cache" / "saferl" / "jax"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.cache_dir() == tmp_path / "xdg" / "saferl" / "jax"


@pytest.mark.parametrize("value", ["off", "0", "false", "None", "", " OFF "])
def test_the_variable_switches_it_off(clean_env, value):
    clean_env.setenv("SAFERL_JAX_CACHE", value)
    assert compilation_cache.cache_dir() is None


def test_the_variable_names_another_directory(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("SAFERL_JAX_CACHE", str(tmp_path / "mine"))
    assert compilation_cache.cache_dir() == tmp_path / "mine"


_SCRIPT = """
import jax, jax.numpy as jnp
from saferl.compilation_cache import enable_compilation_cache
print(enable_compilation_cache())
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
print(float(jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.float32(1.0))))
"""


def _run(env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("\n")[0]


def test_a_compiled_program_is_written_to_the_directory_and_nothing_when_off(tmp_path):
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("SAFERL_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    base["JAX_PLATFORMS"] = "cpu"
    chosen = tmp_path / "cache"
    assert _run({**base, "SAFERL_JAX_CACHE": str(chosen)}) == str(chosen)
    assert any(chosen.iterdir())  # the jitted program's entry
    assert _run({**base, "SAFERL_JAX_CACHE": "off", "XDG_CACHE_HOME": str(tmp_path / "xdg")}) == "None"
    assert not (tmp_path / "xdg").exists()
