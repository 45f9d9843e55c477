"""Algorithm registry: the one place the CLI, the trainer driver and the policy loader look algorithms up.

An algorithm is a frozen config class, a `train(ctx)` function that runs the whole job against a
`TrainContext` (env, config, run dir, logging, checkpoints; see `saferl.training.context`) and a
`load_policy(run_dir)` that returns a `saferl.policies.Policy` for evaluation, rendering and `hardware/`.
Algorithms name their trainer and policy loader as `Lazy` functions of their modules, so that looking an
algorithm up imports neither: loading a policy imports its policy module alone, no trainer (nor optax).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from saferl.errors import UserError


@dataclasses.dataclass(frozen=True)
class Lazy:
    """The function `name` of `module`, imported when first called (an algorithm's `train`, `load_policy`, ...)."""

    module: str  # e.g. "saferl.agents.ppo.train"
    name: str  # e.g. "train"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """`package`'s `__getattr__` (PEP 562) giving the names `exports` lists under the module that defines them,
    imported on first use: an algorithm's package re-exports its trainer's names without importing the trainer."""
    modules = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(modules[name]), name)

    return __getattr__


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str  # CLI name, e.g. "ppo"
    config_cls: type  # frozen dataclass with defaults; `--set key=value` overrides its fields
    train: Callable[[Any], Any]  # train(ctx: TrainContext) -> final metrics dict
    load_policy: Callable[[Any], Any]  # load_policy(run_dir: pathlib.Path) -> saferl.policies.Policy
    description: str = ""
    # True if `train` can learn from recorded transitions (`--data DIR`): off-policy or model-based algorithms.
    # An on-policy algorithm refuses `--data` before a run directory is created.
    uses_recorded_data: bool = False
    # Why this algorithm cannot use recorded data (shown when `--data` is given); used when the flag is False.
    recorded_data_refusal: str = "it cannot learn from recorded transitions"
    # check_config(config, env, env_name): UserError for a config that cannot run on that env (e.g. a missing
    # prior run), called before the run directory is created
    check_config: Callable[[Any, Any, str], None] | None = None
    # load_task_policy(run_dir, task_name) -> Policy planning zero-shot for a task of the env (`env.tasks()`) on
    # the run's learned model; None for algorithms without a model to plan on (`saferl eval --task` refuses)
    load_task_policy: Callable[[Any, str], Any] | None = None


@dataclasses.dataclass(frozen=True)
class SeedBatch:
    """How `saferl train --seeds` runs many seeds of a chunked algorithm in one compiled program
    (`saferl.training.seeds`: the state gets a leading seed axis, `init` and `chunk` are vmapped over it)."""

    # make_parts(config, env, training_env) -> (init(key) -> state, chunk(state) -> (state, scalar metrics),
    # state_shardings(state) -> shardings), all for one seed; memoised like `make_train`
    make_parts: Callable[[Any, Any, Any], tuple[Callable, Callable, Callable]]
    steps_per_chunk: Callable[[Any, Any], int]  # (config, env) -> env steps of one chunk
    checkpoint_every: Callable[[Any, Any], int]  # (config, env) -> env steps between checkpoints
    watched: Callable[[Any], dict[str, Any]]  # trees of one seed's state checked for NaN/Inf after every chunk
    # prefill(ctx, state) -> state with the `--data` recordings (one seed's state); None: refuses --data
    prefill: Callable[[Any, Any], Any] | None = None
    # make_seed_chunk(config, env, training_env) -> chunk_seeds(state [S, ...]) -> (state, metrics, each [S]): the
    # algorithm's own seed-batched chunk (e.g. vmapped programs with host-side timing between them); None:
    # `jit(vmap(chunk))` of `make_parts`
    make_seed_chunk: Callable[[Any, Any, Any], Callable] | None = None
    # row(one seed's metrics as floats) -> its metrics.csv row; None: `saferl.training.loop.episode_row`
    row: Callable[[dict[str, float]], dict[str, float]] | None = None
    # steps_done(config, env, one seed's state) -> env steps so far; None: `state.env_steps`
    steps_done: Callable[[Any, Any, Any], int] | None = None
    # extra(config, env, steps) -> the checkpoint's JSON extra; None: {"env_steps": steps}
    extra: Callable[[Any, Any, int], dict[str, Any]] | None = None


_REGISTRY: dict[str, Algorithm] = {}
_SEED_BATCHES: dict[str, SeedBatch] = {}
# Modules that register algorithms when imported (kept lazy so `import saferl` stays light).
_BUILTIN_MODULES = (
    "saferl.agents.ppo",
    "saferl.agents.sac",
    "saferl.agents.pets",
    "saferl.agents.sooper",
    "saferl.agents.softae",
)


def register(algorithm: Algorithm) -> None:
    _REGISTRY[algorithm.name] = algorithm


def register_seed_batch(name: str, seed_batch: SeedBatch) -> None:
    """Declare that algorithm `name` can run its seeds under `vmap` (called next to its trainer)."""
    _SEED_BATCHES[name] = seed_batch


def seed_batch(name: str) -> SeedBatch | None:
    """How `name` runs seeds in one program, or None: `--seeds` then runs them one after another."""
    train = get(name).train
    if name not in _SEED_BATCHES and isinstance(train, Lazy):
        importlib.import_module(train.module)  # a trainer registers its seed batch when it is imported
    return _SEED_BATCHES.get(name)


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real import error inside an existing module
                raise


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> Algorithm:
    _load_builtins()
    if name not in _REGISTRY:
        raise UserError(f"unknown algorithm '{name}'; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
