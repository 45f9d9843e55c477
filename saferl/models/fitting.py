"""Training of the stacked ensemble in one compiled program.

Data: a random held-out split (shared by members) for early stopping, elite selection and the aleatoric σ
scale; when calibrating, also a held-out region (the tails of every input feature, each on a random side:
edges of the data the members must extrapolate to) for the epistemic σ growth; each member trains on its
own bootstrap resample (or its own shuffling) of the rest. Epochs run in a `lax.while_loop` that stops
after `patience` epochs without a relative held-out improvement (or on a non-finite loss), or once
`max_steps` gradient steps are done (small data sets then train for many epochs, refits on large ones stay
cheap); minibatches in a `lax.fori_loop` (a scan when no mask is given). The best
held-out parameters of each member are kept (mbrl-lib style). Data parallel (`saferl.sharding`): each
minibatch [E, B, ...] and the held-out rows are split over the devices along their row axis, parameters and
optimiser state replicated; XLA adds the gradient all-reduces (one program for 1 and N devices).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Self, cast

import jax
import jax.numpy as jnp
from flax import struct

from saferl import sharding
from saferl.models import calibration, uncertainty
from saferl.models import normalizer as norm_lib
from saferl.models.ensemble import EnsembleConfig, EnsembleState, inputs_of, make_module, make_optimizer, targets_of
from saferl.models.network import MeanLogvar, gaussian_nll, member_fit_score, member_objective

if TYPE_CHECKING:
    import optax

_ARCH_FIELDS = ("num_members", "hidden_sizes", "activation", "deterministic", "num_elites", "min_logvar", "max_logvar")


@struct.dataclass
class FitMetrics:
    """What one `fit` did. Losses and NLL/MSE are in normalised target units; NLL in nats per output.

    Coverages and ECEs are means over informative outputs (targets not constant), of the elites' mixture,
    "before" uncalibrated (a = 1, c = 0) and "calibrated" with the state's aleatoric scale a and epistemic growth c.
    """

    train_loss: jax.Array  # mean minibatch objective (NLL + bound penalty, or MSE) in the last epoch
    holdout_loss: jax.Array  # mean over members of their best held-out score (NLL or MSE)
    member_holdout_loss: jax.Array  # [E] best held-out score of each member
    holdout_nll: jax.Array  # NLL of the elites' moment-matched Gaussian on held-out data, before scaling
    holdout_mse: jax.Array  # squared error of the elites' mean prediction on held-out data
    coverage_1sigma: jax.Array  # held-out fraction within ±1σ (nominal 0.683), before scaling
    coverage_2sigma: jax.Array  # held-out fraction within ±2σ (nominal 0.954), before scaling
    ece: jax.Array  # expected calibration error on held-out rows, before scaling
    calibrated_coverage_1sigma: jax.Array  # coverage_1sigma with the state's σ scales
    calibrated_coverage_2sigma: jax.Array  # coverage_2sigma with the state's σ scales
    calibrated_ece: jax.Array  # ECE with the state's σ scales
    region_coverage_1sigma: jax.Array  # ±1σ coverage on the unseen held-out region, before scaling (NaN: none)
    calibrated_region_coverage_1sigma: jax.Array  # the same with the state's σ scales (NaN: no region)
    aleatoric_scale: jax.Array  # [out] σ_ale multiplier now in the state (ones unless config.calibrate)
    epistemic_growth: jax.Array  # [out] σ_epi growth c now in the state (zeros unless config.calibrate)
    epochs: jax.Array  # int32 epochs run (<= config.epochs)
    holdout_history: jax.Array  # [config.epochs] mean held-out score after each epoch, NaN after the stop
    num_train: jax.Array  # int32 rows used for training
    num_holdout: jax.Array  # int32 random rows held out
    num_region: jax.Array  # int32 rows of the held-out region (0 unless config.calibrate)
    finite: jax.Array  # bool, False if any loss was NaN/Inf (training stopped there; best params kept)

    def to_dict(self) -> dict[str, float]:
        """Scalar metrics as Python floats (for logging); arrays are left out."""
        return {k: float(v) for k, v in vars(self).items() if jnp.ndim(v) == 0}


@struct.dataclass
class _Split:
    order: jax.Array  # [N] row indices: region rows, then random held-out rows, then training rows, then invalid
    n_region: Any  # int or int32 scalar: order[:n_region] are the held-out region
    n_holdout: Any  # int or int32 scalar: order[n_region : n_region + n_holdout] are held out at random
    n_train: Any  # int or int32 scalar: the next n_train rows are for training
    eval_rows: jax.Array  # [n_eval] static-size random held-out rows scored for early stopping
    eval_weights: jax.Array  # [n_eval] 1.0 on real held-out rows
    region_rows: jax.Array  # [n_region_eval] static-size rows of the held-out region
    region_weights: jax.Array  # [n_region_eval] 1.0 on real region rows


def _counts(n_rows: int, mask: jax.Array | None, fraction: float, region_fraction: float) -> tuple[Any, Any, Any]:
    """(valid, random held-out, region) row counts; Python ints when there is no mask. ≥ 1 row trains."""
    if mask is None:
        n_held = 0 if fraction == 0 else min(max(int(n_rows * fraction), 1), n_rows - 1)
        return n_rows, n_held, max(min(int(n_rows * region_fraction), n_rows - n_held - 1), 0)
    n_valid = mask.sum().astype(jnp.int32)
    n_hold = (
        jnp.int32(0) if fraction == 0 else jnp.clip(jnp.floor(n_valid * fraction).astype(jnp.int32), 1, n_valid - 1)
    )
    n_region = jnp.clip(jnp.floor(n_valid * region_fraction).astype(jnp.int32), 0, n_valid - n_hold - 1)
    return n_valid, n_hold, jnp.maximum(n_region, 0)


def _split(
    key: jax.Array, x_n: jax.Array, mask: jax.Array | None, fraction: float, region_fraction: float = 0.0
) -> _Split:
    """Held-out region, then a random held-out split of the other valid rows, then the training rows.

    The region is the union of the tails of every input feature of x_n [N, in], each on a random side (the
    valid rows closest to some feature's extreme): where the members extrapolate past their training data.
    """
    n_rows = x_n.shape[0]
    k_side, k_order = jax.random.split(key)
    n_valid, n_hold, n_region = _counts(n_rows, mask, fraction, region_fraction)
    valid = jnp.ones(n_rows, bool) if mask is None else mask
    # each feature's tail on a random side: a row's depth is its smallest rank over the features
    side = jnp.where(jax.random.bernoulli(k_side, 0.5, (x_n.shape[-1],)), 1.0, -1.0)
    reach = jnp.where(valid[:, None], x_n * side, -jnp.inf)  # [N, in]
    depth = _stable_ranks(-reach.T).min(axis=0)  # [N] 0: a feature's extreme
    in_region = _stable_ranks(depth) < n_region  # the n_region deepest valid rows
    noise = jax.random.uniform(k_order, (n_rows,))
    order = jnp.argsort(jnp.where(valid, jnp.where(in_region, noise - 1.0, noise), 2.0))
    n_eval = n_rows if fraction == 0 else max(math.ceil(n_rows * fraction), 1)
    limit = n_valid - n_region if fraction == 0 else n_hold  # no held-out data: score on the training rows
    n_region_eval = max(math.ceil(n_rows * region_fraction), 1)
    return _Split(
        order=order,
        n_region=n_region,
        n_holdout=n_hold,
        n_train=n_valid - n_hold - n_region,
        eval_rows=order[jnp.minimum(n_region + jnp.arange(n_eval), n_rows - 1)],
        eval_weights=(jnp.arange(n_eval) < limit).astype(jnp.float32),
        region_rows=order[:n_region_eval],
        region_weights=(jnp.arange(n_region_eval) < n_region).astype(jnp.float32),
    )


def _stable_ranks(values: jax.Array) -> jax.Array:
    """Rank of each entry of values [..., N] in a stable ascending sort of its last axis (ties: lower index
    first), int32: what argsort(argsort(values)) gives, with one sort and a scatter of the inverse."""
    order = jnp.argsort(values, axis=-1).reshape(-1, values.shape[-1])

    def inverse(perm: jax.Array) -> jax.Array:
        return jnp.zeros_like(perm).at[perm].set(jnp.arange(perm.shape[0], dtype=perm.dtype), unique_indices=True)

    return jax.vmap(inverse)(order).reshape(values.shape)


def _epoch_order(key: jax.Array, shape: tuple[int, ...], n_train: Any) -> jax.Array:
    """Each member's random order of its training positions for one epoch: [E, n_train] when n_train is a
    Python int, else [E, N] with the positions >= n_train last.

    The same permutation as a stable argsort of `jax.random.uniform(key, shape)` (positions >= n_train
    set to 2): that uniform is (bits >> 9) / 2**23 exactly, so sorting the 23-bit integers (ties by
    position) orders the positions as the floats do, with a cheaper comparison than a float argsort's.
    """
    mantissa = (jax.random.bits(key, shape, jnp.uint32) >> 9).astype(jnp.int32)  # [E, N] in [0, 2**23)
    if isinstance(n_train, int):  # no mask: only the training positions are sorted, the rest never used
        mantissa = mantissa[:, :n_train]
    else:
        mantissa = jnp.where(jnp.arange(shape[1]) < n_train, mantissa, 1 << 23)
    positions = jax.lax.broadcasted_iota(jnp.int32, mantissa.shape, 1)
    return jax.lax.sort((mantissa, positions), dimension=1, num_keys=1, is_stable=True)[1]


def _member_train_rows(key: jax.Array, split: _Split, n_rows: int, config: EnsembleConfig) -> jax.Array:
    """[E, N] data rows of each member's training set; positions >= n_train are unused."""
    positions = jnp.broadcast_to(jnp.arange(n_rows), (config.num_members, n_rows))
    if config.bootstrap:
        positions = jax.random.randint(key, (config.num_members, n_rows), 0, jnp.maximum(split.n_train, 1))
    return split.order[jnp.minimum(split.n_region + split.n_holdout + positions, n_rows - 1)]


@struct.dataclass
class _Carry:
    key: jax.Array
    params: Any
    opt_state: Any
    best_params: Any
    best_score: jax.Array  # [E]
    epoch: jax.Array
    since_improved: jax.Array
    finite: jax.Array
    history: jax.Array  # [max epochs]
    train_loss: jax.Array
    steps: jax.Array

    if TYPE_CHECKING:  # flax's struct.dataclass adds `replace` at run time, unseen by mypy

        def replace(self, **changes: Any) -> Self: ...


def _informative_outputs(y_eval: jax.Array, weights: jax.Array) -> jax.Array:
    """[out] 1 for outputs that vary in the (normalised) held-out targets, 0 for constants (normalised to 0)."""
    return ((jnp.abs(y_eval) * weights[:, None]).sum(0) > 0).astype(jnp.float32)


def _score(module: Any, params: Any, x_eval: jax.Array, y_eval: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted mean held-out score of every member over the informative outputs: [E]."""
    informative = _informative_outputs(y_eval, weights)
    scores = jax.vmap(member_fit_score, in_axes=(None, 0, None, None, None))(
        module, params, x_eval, y_eval, informative
    )
    return (scores * weights).sum(-1) / jnp.maximum(weights.sum(), 1.0)


def _run_epoch(
    carry: _Carry,
    x_n: jax.Array,
    y_n: jax.Array,
    rows: jax.Array,
    n_train: Any,
    module: Any,
    tx: optax.GradientTransformation,
    config: EnsembleConfig,
) -> _Carry:
    """One pass over each member's (reshuffled) training set, minibatch by minibatch."""
    import optax  # here, not at the top: a model that only predicts (a loaded policy's) needs no optax

    key, k_perm = jax.random.split(carry.key)
    perm = _epoch_order(k_perm, rows.shape, n_train)  # train positions first
    epoch_rows = jnp.take_along_axis(rows, perm, axis=1)  # [E, n_train] or [E, N]
    batch = config.batch_size
    n_steps = (n_train + batch - 1) // batch

    def loss_fn(params: Any, xb: jax.Array, yb: jax.Array) -> tuple[jax.Array, jax.Array]:
        per_member = jax.vmap(member_objective, in_axes=(None, 0, 0, 0, None))(
            module, params, xb, yb, config.logvar_bound_penalty
        )
        return per_member.sum(), per_member  # sum: each member gets its own gradient

    def step(j: Any, inner: tuple[Any, Any, jax.Array]) -> tuple[Any, Any, jax.Array]:
        params, opt_state, loss_sum = inner
        idx = epoch_rows[:, (j * batch + jnp.arange(batch)) % n_train]  # [E, B], wraps on the last batch
        xb, yb = sharding.constrain((x_n[idx], y_n[idx]), 1)  # [E, B, ...]: the B rows split over the devices
        grads, per_member = jax.grad(loss_fn, has_aux=True)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        params, opt_state = sharding.constrain_replicated((optax.apply_updates(params, updates), opt_state))
        return params, opt_state, loss_sum + per_member.mean()

    params, opt_state, loss_sum = jax.lax.fori_loop(0, n_steps, step, (carry.params, carry.opt_state, 0.0))
    return carry.replace(
        key=key, params=params, opt_state=opt_state, train_loss=loss_sum / n_steps, steps=carry.steps + n_steps
    )


def _train(
    key: jax.Array, state: EnsembleState, x_n: jax.Array, y_n: jax.Array, split: _Split, config: EnsembleConfig
) -> _Carry:
    """Epoch loop with early stopping; returns the final carry (best params in `best_params`)."""
    module, tx = make_module(config, state.out_size), make_optimizer(config)
    k_rows, k_loop = jax.random.split(key)
    rows = _member_train_rows(k_rows, split, x_n.shape[0], config)
    x_eval, y_eval = sharding.constrain((x_n[split.eval_rows], y_n[split.eval_rows]), 0)  # [n_eval, ...] split
    score = functools.partial(_score, module, x_eval=x_eval, y_eval=y_eval, weights=split.eval_weights)
    init_score = score(state.params)
    carry = _Carry(
        key=k_loop,
        params=state.params,
        opt_state=state.opt_state,
        best_params=state.params,
        best_score=jnp.where(jnp.isfinite(init_score), init_score, jnp.inf),
        epoch=jnp.int32(0),
        since_improved=jnp.int32(0),
        finite=jnp.array(True),
        train_loss=jnp.float32(jnp.nan),
        history=jnp.full((config.epochs,), jnp.nan),
        steps=jnp.int32(0),
    )

    def cond(c: _Carry) -> jax.Array:
        within_budget = (c.steps < config.max_steps) if config.max_steps > 0 else True
        return (c.epoch < config.epochs) & (c.since_improved < config.patience) & c.finite & within_budget

    def body(c: _Carry) -> _Carry:
        c = _run_epoch(c, x_n, y_n, rows, split.n_train, module, tx, config)
        member_score = score(c.params)
        finite = c.finite & jnp.isfinite(c.train_loss) & jnp.all(jnp.isfinite(member_score))
        gain = (c.best_score - member_score) / jnp.maximum(jnp.abs(c.best_score), 1e-8)
        improved = (member_score < c.best_score) & ((gain > config.improvement_threshold) | ~jnp.isfinite(gain))
        best_params = jax.tree.map(
            lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            c.params,
            c.best_params,
        )
        return c.replace(
            best_params=best_params,
            best_score=jnp.where(improved, member_score, c.best_score),
            epoch=c.epoch + 1,
            since_improved=jnp.where(improved.any(), 0, c.since_improved + 1),
            finite=finite,
            history=c.history.at[c.epoch].set(member_score.mean()),
        )

    return jax.lax.while_loop(cond, body, carry)


def _normalised_moments(state: EnsembleState, params: Any, x_n: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Member means and variances in normalised units: [E, N, out]."""
    mean, logvar = cast(MeanLogvar, jax.vmap(state.module.apply, in_axes=(0, None))(params, x_n))
    if logvar is None:
        return mean, jnp.full_like(mean, state.config.deterministic_std**2)
    return mean, jnp.exp(logvar)


def _elite_parts(state: EnsembleState, x_n: jax.Array, y_n: jax.Array) -> tuple[jax.Array, ...]:
    """Elites' mixture on rows x_n [N, in] against y_n [N, out]: (mean, |error|, aleatoric var, epistemic var)."""
    mean, var = _normalised_moments(state, state.params, x_n)
    mean, var = mean[state.elite_idx], var[state.elite_idx]
    center = mean.mean(axis=0)
    return center, jnp.abs(y_n - center), var.mean(axis=0), uncertainty.epistemic_variance(mean)


def _heldout_metrics(
    state: EnsembleState, split: _Split, x_n: jax.Array, y_n: jax.Array, config: EnsembleConfig
) -> dict[str, jax.Array]:
    """σ calibration (fitted if config.calibrate) and calibration/accuracy of the elites' mixture on held-out
    rows (normalised units). Outputs constant in the held-out targets (e.g. a cost that is always 0) are left
    out of the averages and stay uncalibrated (a = 1, c = 0)."""
    y_eval, weights = y_n[split.eval_rows], split.eval_weights
    mean, err, ale, epi = _elite_parts(state, x_n[split.eval_rows], y_eval)
    region = _elite_parts(state, x_n[split.region_rows], y_n[split.region_rows])[1:]
    informative = _informative_outputs(y_eval, weights)
    if config.calibrate:
        aleatoric, growth = calibration.fit_uncertainty_scales((err, ale, epi), region, weights, split.region_weights)
        aleatoric, growth = jnp.where(informative > 0, aleatoric, 1.0), jnp.where(informative > 0, growth, 0.0)
    else:
        aleatoric, growth = jnp.ones(state.out_size), jnp.zeros(state.out_size)
    w = weights[:, None]
    n_out = jnp.maximum(informative.sum(), 1.0)
    count = jnp.maximum(weights.sum(), 1.0) * n_out
    var, var_cal = ale + epi, jnp.square(aleatoric) * ale + calibration.calibrated_epistemic_variance(epi, growth)
    region_var = region[1] + region[2]
    region_var_cal = jnp.square(aleatoric) * region[1] + calibration.calibrated_epistemic_variance(region[2], growth)
    nll = gaussian_nll(mean, jnp.log(jnp.maximum(var, 1e-8)), y_eval)

    def over_outputs(per_output: jax.Array) -> jax.Array:
        return (per_output * informative).sum() / n_out

    def region_coverage(region_var: jax.Array) -> jax.Array:
        covered = over_outputs(calibration.coverage(0.0, region_var, region[0], 1.0, split.region_weights))
        return jnp.where(split.region_weights.sum() > 0, covered, jnp.nan)

    return dict(
        holdout_nll=(nll * w * informative).sum() / count,
        holdout_mse=(jnp.square(err) * w * informative).sum() / count,
        coverage_1sigma=over_outputs(calibration.coverage(mean, var, y_eval, 1.0, weights)),
        coverage_2sigma=over_outputs(calibration.coverage(mean, var, y_eval, 2.0, weights)),
        ece=calibration.expected_calibration_error(mean, var, y_eval, weights, informative),
        calibrated_coverage_1sigma=over_outputs(calibration.coverage(mean, var_cal, y_eval, 1.0, weights)),
        calibrated_coverage_2sigma=over_outputs(calibration.coverage(mean, var_cal, y_eval, 2.0, weights)),
        calibrated_ece=calibration.expected_calibration_error(mean, var_cal, y_eval, weights, informative),
        region_coverage_1sigma=region_coverage(region_var),
        calibrated_region_coverage_1sigma=region_coverage(region_var_cal),
        aleatoric_scale=aleatoric,
        epistemic_growth=growth,
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _fit(
    key: jax.Array, state: EnsembleState, batch: Any, mask: jax.Array | None, config: EnsembleConfig
) -> tuple[EnsembleState, FitMetrics]:
    x = inputs_of(batch).reshape(-1, state.obs_size + state.action_size)
    y = targets_of(batch).reshape(-1, state.out_size)
    mask = None if mask is None else mask.reshape(-1)
    k_split, k_train = jax.random.split(key)
    norm = norm_lib.from_data(x, y, None if mask is None else mask.astype(x.dtype))
    x_n, y_n = norm_lib.normalize_inputs(norm, x), norm_lib.normalize_targets(norm, y)
    split = _split(k_split, x_n, mask, config.holdout_fraction, config.region_fraction if config.calibrate else 0.0)
    carry = _train(k_train, state.replace(normalizer=norm), x_n, y_n, split, config)
    elites = jnp.argsort(carry.best_score)[: config.num_elites].astype(jnp.int32)
    state = state.replace(
        params=carry.best_params,
        normalizer=norm,
        opt_state=carry.opt_state,
        elite_idx=elites,
        step=state.step + carry.steps,
    )
    held = _heldout_metrics(state, split, x_n, y_n, config)
    state = state.replace(aleatoric_scale=held["aleatoric_scale"], epistemic_growth=held["epistemic_growth"])
    metrics = FitMetrics(
        train_loss=carry.train_loss,
        holdout_loss=carry.best_score.mean(),
        member_holdout_loss=carry.best_score,
        epochs=carry.epoch,
        holdout_history=carry.history,
        num_train=jnp.int32(split.n_train),
        num_holdout=jnp.int32(split.n_holdout),
        num_region=jnp.int32(split.n_region),
        finite=carry.finite,
        **held,
    )
    return state, metrics


def fit(
    key: jax.Array,
    state: EnsembleState,
    batch: Any,
    config: EnsembleConfig | None = None,
    mask: jax.Array | None = None,
) -> tuple[EnsembleState, FitMetrics]:
    """Train all members on a Transition batch (leading axes [N] or [T, B]); jitted once per shape/config.

    `config` may change training fields (learning rate, epochs, ...) but not the architecture; `mask`
    ([N] bool) selects valid rows of a fixed-size batch (e.g. `buffer.all_valid`) so the buffer can grow
    without recompiling. Normalisation statistics are recomputed from the valid rows. Returns the new
    state (each member's best held-out parameters, elites, σ scales) and `FitMetrics`; check
    `metrics.finite` and raise `saferl.errors.NonFiniteError` where a NaN must stop the run.
    """
    config = state.config if config is None else config
    changed = [f for f in _ARCH_FIELDS if getattr(config, f) != getattr(state.config, f)]
    if changed:
        raise ValueError(f"fit config changes architecture fields {changed}; re-init the ensemble instead")
    n_rows = int(batch.reward.size)
    if n_rows < 2:
        raise ValueError(f"fit needs at least 2 transitions, got {n_rows}")
    if mask is not None:
        try:
            n_valid = int(jnp.sum(mask))
        except jax.errors.ConcretizationTypeError:  # traced under an outer jit: checked by the caller
            n_valid = 2
        if n_valid < 2:
            raise ValueError(f"fit needs at least 2 valid transitions, mask has {n_valid}")
    return _fit(key, state, batch, mask, config)
