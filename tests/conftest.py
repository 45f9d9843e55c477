"""Shared test set-up: CPU, float32, and the project's persistent compilation cache (outside the clone, in
`$XDG_CACHE_HOME/saferl/jax` unless `SAFERL_JAX_CACHE` says otherwise: `saferl.compilation_cache`), shared by
the xdist workers, the subprocesses and notebook kernels the tests start, and the next session."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "egl")

from saferl.compilation_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
