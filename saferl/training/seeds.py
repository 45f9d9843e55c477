"""Many seeds of one config in one compiled program (`saferl train ALGO --seeds 0 1 2 3 4`, purejaxrl style).

For an algorithm with a `registry.SeedBatch` (PPO, SAC, PETS, SoftAE) the training state gets a leading seed axis
[S, ...]: `init` is vmapped over the seeds' keys `PRNGKey(k)` and the jitted chunk is vmapped over the state,
so S seeds cost one trace and one compile. Each seed writes its own run directory
`<out>/<algo>-<env>-seed<k>-<time>/` with exactly what `--seed k` alone writes (config.json with `seed: k`,
metrics.csv, plots, checkpoints of that seed's state alone, so `saferl train --resume DIR` continues any one
of them on its own); its metrics equal the single-seed run's up to float rounding (batched matmuls may
reduce in another order; as with any reordering, PPO/SAC training amplifies it over many chunks). With several devices
the seed axis is replicated and each seed's env batch is split over the "data" mesh as in a single run
(`saferl.sharding`). Algorithms without one (SOOPER: host-side episode logic) run their seeds one after another in the
same process, reusing the compiled functions (every trainer memoises them on the config).
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from saferl import registry, sharding
from saferl.errors import NonFiniteError, UserError
from saferl.training import run as run_lib
from saferl.training.context import TrainContext, check_finite
from saferl.training.logger import LoggerChoice
from saferl.training.loop import EPISODE_KEYS, episode_row
from saferl.training.progress import ProgressDisplay


def check_seeds(seeds: Sequence[int], seed: int | None = None) -> list[int]:
    """The seeds as ints; `UserError` for an empty list, a non-integer, duplicates or `--seed` given too."""
    if seed is not None:
        raise UserError(
            f"--seed {seed} and --seeds {' '.join(map(str, seeds))} are exclusive; give the seeds "
            f"to train with --seeds alone (e.g. --seeds {seed})"
        )
    if len(seeds) == 0:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 0 1 2")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, (int, np.integer))]
    if bad:
        raise UserError(f"--seeds {bad[0]!r} is not an integer; seeds are integers, e.g. --seeds 0 1 2")
    duplicates = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
    if duplicates:
        raise UserError(
            f"--seeds lists {', '.join(map(str, duplicates))} more than once; each seed is one run "
            f"directory, give each once"
        )
    return [int(s) for s in seeds]


def vmaps_seeds(algo: str) -> bool:
    """Whether `--seeds` runs `algo`'s seeds in one compiled program (else one after another)."""
    return registry.seed_batch(algo) is not None


# ---------------------------------------------------------------------------------------------- compiled parts


def seed_shardings(state_shardings: Callable[[Any], Any], state: Any) -> Any:
    """Shardings of a seed-batched state [S, ...]: one seed's layout (`state_shardings`) with the seed axis
    replicated in front (every device holds all seeds; each seed's env batch stays split over "data")."""
    one_seed = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf)[1:], leaf.dtype), state)
    return jax.tree.map(lambda s: NamedSharding(s.mesh, PartitionSpec(None, *s.spec)), state_shardings(one_seed))


@functools.lru_cache(maxsize=8)
def vmapped(parts: tuple[Callable, Callable | None, Callable]) -> tuple[Callable, Callable | None, Any]:
    """`(init_seeds(keys [S, 2]), chunk_seeds(state [S, ...]), jitted vmapped chunk)` of one seed's
    `parts = (init, chunk, state_shardings)` (memoised on `parts`, which trainers memoise on their config):
    states placed by `seed_shardings`, metrics [S] per key. The jitted chunk is returned for inspection
    (its `_cache_size()` counts compilations). A `chunk` of None gives None for both chunk entries."""
    init, chunk, state_shardings = parts
    init_jit = jax.jit(jax.vmap(init))

    def init_seeds(keys: jax.Array) -> Any:
        state = init_jit(keys)
        return sharding.place(state, seed_shardings(state_shardings, state))

    if chunk is None:
        return init_seeds, None, None
    chunk_jit = jax.jit(jax.vmap(chunk))

    def chunk_seeds(state: Any) -> tuple[Any, dict]:
        return chunk_jit(sharding.place(state, seed_shardings(state_shardings, state)))

    return init_seeds, chunk_seeds, chunk_jit


def seed_slice(tree: Any, index: int) -> Any:
    """Seed `index`'s part of a seed-batched tree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def stack_seeds(trees: Sequence[Any]) -> Any:
    """Per-seed trees of one structure stacked along a new leading seed axis."""
    return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(leaf) for leaf in leaves]), *trees)


# ---------------------------------------------------------------------------------------------- the loop


def _check_chunk(
    ctxs: Sequence[TrainContext], metrics: Mapping[str, np.ndarray], watched: Mapping[str, Any], step: int
) -> None:
    """`NonFiniteError` naming the seed and quantity if any seed's losses or watched trees are NaN/Inf."""
    for index, ctx in enumerate(ctxs):
        try:
            check_finite("losses", {k: v[index] for k, v in metrics.items() if k not in EPISODE_KEYS}, step)
            for name, tree in watched.items():
                check_finite(name, seed_slice(tree, index), step)
        except NonFiniteError as err:
            raise NonFiniteError(f"seed {ctx.seed} {err.quantity}", step, f"run {ctx.run_dir}") from None


def run_seed_chunks(
    ctxs: Sequence[TrainContext],
    state: Any,
    chunk_seeds: Callable[[Any], tuple[Any, Any]],
    *,
    steps_per_chunk: int,
    start_steps: int,
    checkpoint_every: int,
    watched: Callable[[Any], Mapping[str, Any]],
    extra: Callable[[int], dict[str, Any]],
    row: Callable[[dict[str, float]], dict[str, float]] = episode_row,
) -> tuple[Any, int, list[dict[str, float]]]:
    """`saferl.training.loop.run_chunks` for a seed-batched state: run vmapped chunks to the seeds' common
    `total_steps`, log each seed's row to its own run, checkpoint each seed's state in its own run (same steps
    as a single run). NaN/Inf in any seed stops all of them (`NonFiniteError` naming the seed) after saving
    every seed's last good state, as Ctrl-C does. Returns (state, env steps, each seed's last row)."""
    total = ctxs[0].total_steps
    env_steps, last_saved = int(start_steps), int(start_steps) if ctxs[0].resuming else None
    rows: list[dict[str, float]] = [{} for _ in ctxs]

    def save(steps: int, state: Any) -> None:
        for index, ctx in enumerate(ctxs):
            ctx.checkpoints.save(steps, seed_slice(state, index), extra(steps))

    try:
        while env_steps < total:
            new_state, metrics = chunk_seeds(state)
            metrics = jax.device_get(metrics)
            new_steps = env_steps + steps_per_chunk
            _check_chunk(ctxs, metrics, jax.device_get(watched(new_state)), new_steps)
            state, env_steps = new_state, new_steps
            for index, ctx in enumerate(ctxs):
                rows[index] = row({k: v[index] for k, v in metrics.items()})
                ctx.logger.log(env_steps, rows[index])
            if env_steps - (last_saved or 0) >= checkpoint_every or env_steps >= total:
                save(env_steps, state)
                last_saved = env_steps
    except (NonFiniteError, KeyboardInterrupt):
        if last_saved != env_steps:  # keep every seed's last good state (the initial one if the first chunk failed)
            save(env_steps, state)
        raise
    return state, env_steps, rows


def _restored_state(ctx: TrainContext, target: Any) -> Any:
    """The state a resuming `ctx` (`ctx.resuming`) restores into the structure of `target`."""
    restored = ctx.resume(target)
    if restored is None:
        raise RuntimeError(f"run {ctx.run_dir} is not resuming: it has no checkpoint to restore")
    return restored[0]


def train_seed_batch(ctxs: Sequence[TrainContext], seed_batch: registry.SeedBatch) -> list[dict[str, float]]:
    """The vmapped job of `ctxs` (one per seed, same config, env and world; all fresh or all resumed from
    the same step): init or restore, `--data` prefill, run the chunks. Each seed's final metrics."""
    first = ctxs[0]
    config, env, world = first.algo_config, first.env, first.training_env
    parts = seed_batch.make_parts(config, env, world)
    init_seeds, chunk_seeds, _ = vmapped(parts)
    if seed_batch.make_seed_chunk is not None:
        chunk_seeds = seed_batch.make_seed_chunk(config, env, world)
    assert chunk_seeds is not None  # make_parts gives a chunk (only a chunk of None gives none)
    if first.resuming:
        target = jax.eval_shape(parts[0], jax.random.PRNGKey(0))
        state = stack_seeds([_restored_state(ctx, target) for ctx in ctxs])
    else:
        state = init_seeds(jnp.stack([jax.random.PRNGKey(ctx.seed) for ctx in ctxs]))
        prefill = seed_batch.prefill
        if first.data_dir is not None and prefill is not None:
            state = jax.vmap(lambda one: prefill(first, one))(state)
    one_seed = seed_slice(state, 0)
    start = int(one_seed.env_steps) if seed_batch.steps_done is None else seed_batch.steps_done(config, env, one_seed)
    extra = (
        (lambda steps: {"env_steps": steps})
        if seed_batch.extra is None
        else functools.partial(seed_batch.extra, config, env)
    )
    state, env_steps, rows = run_seed_chunks(
        ctxs,
        state,
        chunk_seeds,
        steps_per_chunk=seed_batch.steps_per_chunk(config, env),
        start_steps=start,
        checkpoint_every=seed_batch.checkpoint_every(config, env),
        watched=seed_batch.watched,
        extra=lambda steps: {**extra(steps), "algo": first.algo},
        row=seed_batch.row or episode_row,
    )
    return [{"env_steps": env_steps, **row} for row in rows]


# ---------------------------------------------------------------------------------------------- entry points


def train_seeds(
    algo: str | None,
    env_name: str | None,
    seeds: Sequence[int] = (),
    *,
    steps: int | None = None,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_overrides: Mapping[str, Any] | None = None,
    out: pathlib.Path | str = "runs",
    resume: Sequence[pathlib.Path | str] = (),
    data: pathlib.Path | str | None = None,
    progress: bool = True,
    tensorboard: LoggerChoice = True,
) -> list[run_lib.RunResult]:
    """`saferl train ALGO --seeds ...`: one new run directory per seed (`<out>/<algo>-<env>-seed<k>-<time>/`),
    trained together (one compiled program where the algorithm has a `SeedBatch`, else one after another);
    or, with several `resume` run dirs (runs of one config, different seeds, checkpointed at the same step),
    all of them continued together up to `steps`. One `RunResult` per seed, in the order given."""
    if resume:
        if seeds:
            raise UserError("--seeds cannot be given with --resume: a resumed run keeps its seed")
        return resume_seeds(
            algo,
            env_name,
            resume,
            steps=steps,
            changed=bool(overrides or env_overrides or data is not None or seed is not None),
            progress=progress,
            tensorboard=tensorboard,
        )
    seeds = check_seeds(seeds, seed)
    if algo is None or env_name is None:
        raise UserError("an algorithm and --env are required with --seeds")
    new = run_lib.prepare_new_run(algo, env_name, steps, dict(overrides or {}), dict(env_overrides or {}), data)
    records = [run_lib.create_run(new, k, pathlib.Path(out), f"{env_name}-seed{k}") for k in seeds]
    return _train_records(records, new.env_config, new.algo_config, None, progress, tensorboard, new.env)


def resume_seeds(
    algo: str | None,
    env_name: str | None,
    run_dirs: Sequence[pathlib.Path | str],
    *,
    steps: int | None = None,
    changed: bool = False,
    progress: bool = True,
    tensorboard: LoggerChoice = True,
) -> list[run_lib.RunResult]:
    """Continue the runs `run_dirs` together up to `steps` (default: each run's own); they must share
    algorithm, env, configs, training world and data and have their last checkpoints at the same step."""
    resumed = [run_lib._resumed_record(pathlib.Path(d), algo, env_name, steps, changed) for d in run_dirs]
    records = [r[0] for r in resumed]
    first = records[0]
    for record, _, _, step in resumed[1:]:
        for field in ("algo", "env", "env_config", "algo_config", "steps", "data_dir", "training_env"):
            if getattr(record, field) != getattr(first, field):
                raise UserError(
                    f"--resume {record.path}: its {field} differs from {first.path}'s; only runs of "
                    f"one config (different seeds) can be resumed together"
                )
        if step != resumed[0][3]:
            raise UserError(
                f"--resume {record.path}: its last checkpoint is at step {step}, {first.path}'s at "
                f"{resumed[0][3]}; runs resumed together must be at the same step"
            )
    check_seeds([r.seed for r in records])
    _, env_config, algo_config, resume_step = resumed[0]
    return _train_records(records, env_config, algo_config, resume_step, progress, tensorboard)


def _train_records(
    records: Sequence[Any],
    env_config: Any,
    algo_config: Any,
    resume_step: int | None,
    progress: bool,
    tensorboard: LoggerChoice,
    env: Any = None,
) -> list[run_lib.RunResult]:
    """Train the created or resumed runs `records` (one per seed) vmapped, or one after another."""
    from saferl.training import distributed

    algo = records[0].algo
    batch = registry.seed_batch(algo)
    if batch is None:  # host-side episode logic: one run after another, sharing the compiled functions
        return [
            run_lib._run(record, env_config, algo_config, resume_step, progress, tensorboard, env) for record in records
        ]
    display = ProgressDisplay(
        records[0].steps,
        f"{algo} {records[0].env} ×{len(records)} seeds",
        enabled=progress and distributed.is_primary(),
        start_steps=resume_step or 0,
    )
    ctxs: list[TrainContext] = []
    plots: list[list[pathlib.Path]] = []
    try:
        for record in records:
            ctxs.append(run_lib.open_run(record, env_config, algo_config, resume_step, display, tensorboard, env))
        ctxs[0].logger.add_listener(display.update)
        metrics = train_seed_batch(ctxs, batch)
    finally:
        display.close()
        plots = [run_lib.close_run(ctx, close_display=False) for ctx in ctxs]
    return [
        run_lib.RunResult(run_dir=ctx.run_dir, metrics=dict(m), plots=p)
        for ctx, m, p in zip(ctxs, metrics, plots, strict=False)
    ]
