"""The persistent XLA compilation cache that `saferl train`, the tests, the benchmarks and the notebooks share.

JAX compiles every jitted program at its first call; with a persistent cache a second process (the next
`saferl train`, the next test session, a notebook kernel) loads the compiled program from disk instead.
The cache lives outside the repository, in the user's cache directory, so a fresh clone reuses what an
earlier one compiled:

- `SAFERL_JAX_CACHE=/some/dir`: use that directory;
- `SAFERL_JAX_CACHE=off` (or `0`, `false`, `none`, empty): no persistent cache;
- otherwise `$XDG_CACHE_HOME/saferl/jax` (`~/.cache/saferl/jax` when XDG_CACHE_HOME is unset).

A cache directory set through JAX's own `JAX_COMPILATION_CACHE_DIR` is left as it is. Entries are keyed by
JAX on the program, the JAX/XLA versions, the backend and the XLA flags, so a stale entry is never loaded.
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "SAFERL_JAX_CACHE"
_OFF = ("", "0", "off", "false", "none", "no")
MIN_COMPILE_TIME_S = 0.5  # programs that compiled faster than this are not written (their load costs as much)


def cache_dir() -> pathlib.Path | None:
    """The persistent cache directory this process should use (see the module docstring), None when off."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        if value.strip().lower() in _OFF:
            return None
        return pathlib.Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "saferl" / "jax"


def enable_compilation_cache() -> pathlib.Path | None:
    """Point JAX's persistent compilation cache at `cache_dir()` (created if missing); returns the directory in
    use, or None when the cache is switched off. Call it before the first jitted call of the process (JAX
    reads the setting when it compiles its first program). Idempotent."""
    configured = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    path = pathlib.Path(configured) if configured else cache_dir()
    if path is None:
        return None
    # XLA:CPU logs an error line per program it loads from the cache when its CPU-feature check lists tuning
    # flags (+prefer-no-gather, ...) the host does not report, even on the machine that compiled it: noise for
    # every cached program. XLA reads its C++ log level when jaxlib loads, so this precedes `import jax`
    # (where JAX was imported already, set TF_CPP_MIN_LOG_LEVEL=3 yourself).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only home: run without the cache rather than fail
        import warnings

        warnings.warn(
            f"saferl: no persistent compilation cache ({path}: {err}); set {ENV_VAR} to a writable "
            "directory or to 'off'",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
