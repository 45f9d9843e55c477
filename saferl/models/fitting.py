"""Training of the stacked ensemble in one compiled program.

Data: a random held-out split (shared by members) for early stopping, elite selection and calibration;
each member trains on its own bootstrap resample (or its own shuffling) of the rest. Epochs run in a
`lax.while_loop` that stops after `patience` epochs without a relative held-out improvement (or on a
non-finite loss), or once `max_steps` gradient steps are done (small data sets then train for many epochs,
refits on large ones stay cheap); minibatches in a `lax.fori_loop` (a scan when no mask is given). The best
held-out parameters of each member are kept (mbrl-lib style).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from saferl.models import calibration, uncertainty
from saferl.models import normalizer as norm_lib
from saferl.models.ensemble import (EnsembleConfig, EnsembleState, inputs_of, make_module, make_optimizer,
                                    targets_of)
from saferl.models.network import gaussian_nll, member_fit_score, member_objective

_ARCH_FIELDS = ("num_members", "hidden_sizes", "activation", "deterministic", "num_elites", "min_logvar",
                "max_logvar")


@struct.dataclass
class FitMetrics:
    """What one `fit` did. Losses and NLL/MSE are in normalised target units; NLL in nats per output."""

    train_loss: jax.Array  # mean minibatch objective (NLL + bound penalty, or MSE) in the last epoch
    holdout_loss: jax.Array  # mean over members of their best held-out score (NLL or MSE)
    member_holdout_loss: jax.Array  # [E] best held-out score of each member
    holdout_nll: jax.Array  # NLL of the elites' moment-matched Gaussian on held-out data
    holdout_mse: jax.Array  # squared error of the elites' mean prediction on held-out data
    coverage_1sigma: jax.Array  # held-out fraction within ±1σ (nominal 0.683), before post-hoc scaling
    coverage_2sigma: jax.Array  # held-out fraction within ±2σ (nominal 0.954), before post-hoc scaling
    ece: jax.Array  # expected calibration error, before post-hoc scaling
    calibrated_ece: jax.Array  # ECE with state.calibration_scale applied
    calibration_scale: jax.Array  # [out] σ multiplier now in the state (ones unless config.calibrate)
    epochs: jax.Array  # int32 epochs run (<= config.epochs)
    holdout_history: jax.Array  # [config.epochs] mean held-out score after each epoch, NaN after the stop
    num_train: jax.Array  # int32 rows used for training
    num_holdout: jax.Array  # int32 rows held out
    finite: jax.Array  # bool, False if any loss was NaN/Inf (training stopped there; best params kept)

    def to_dict(self) -> dict[str, float]:
        """Scalar metrics as Python floats (for logging); arrays are left out."""
        return {k: float(v) for k, v in vars(self).items() if jnp.ndim(v) == 0}


@struct.dataclass
class _Split:
    order: jax.Array  # [N] row indices: valid rows first, in random order
    n_holdout: Any  # int or int32 scalar: order[:n_holdout] are held out
    n_train: Any  # int or int32 scalar: order[n_holdout : n_holdout + n_train] are for training
    eval_rows: jax.Array  # [n_eval] static-size rows scored for early stopping
    eval_weights: jax.Array  # [n_eval] 1.0 on real held-out rows


def _split(key: jax.Array, n_rows: int, mask: jax.Array | None, fraction: float) -> _Split:
    """Random held-out split over the valid rows; sizes are Python ints when there is no mask."""
    noise = jax.random.uniform(key, (n_rows,))
    if mask is None:
        order, n_valid = jnp.argsort(noise), n_rows
        n_hold = 0 if fraction == 0 else min(max(int(n_valid * fraction), 1), n_valid - 1)
    else:
        order = jnp.argsort(jnp.where(mask, noise, 2.0))
        n_valid = mask.sum().astype(jnp.int32)
        n_hold = jnp.int32(0) if fraction == 0 else jnp.clip(jnp.floor(n_valid * fraction).astype(jnp.int32),
                                                             1, n_valid - 1)
    n_eval = n_rows if fraction == 0 else max(math.ceil(n_rows * fraction), 1)
    limit = n_valid if fraction == 0 else n_hold  # with no held-out data, score on the training rows
    weights = (jnp.arange(n_eval) < limit).astype(jnp.float32)
    return _Split(order=order, n_holdout=n_hold, n_train=n_valid - n_hold, eval_rows=order[:n_eval],
                  eval_weights=weights)


def _member_train_rows(key: jax.Array, split: _Split, n_rows: int, config: EnsembleConfig) -> jax.Array:
    """[E, N] data rows of each member's training set; positions >= n_train are unused."""
    positions = jnp.broadcast_to(jnp.arange(n_rows), (config.num_members, n_rows))
    if config.bootstrap:
        positions = jax.random.randint(key, (config.num_members, n_rows), 0, jnp.maximum(split.n_train, 1))
    return split.order[jnp.minimum(split.n_holdout + positions, n_rows - 1)]


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


def _informative_outputs(y_eval: jax.Array, weights: jax.Array) -> jax.Array:
    """[out] 1 for outputs that vary in the (normalised) held-out targets, 0 for constants (normalised to 0)."""
    return ((jnp.abs(y_eval) * weights[:, None]).sum(0) > 0).astype(jnp.float32)


def _score(module: Any, params: Any, x_eval: jax.Array, y_eval: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted mean held-out score of every member over the informative outputs: [E]."""
    informative = _informative_outputs(y_eval, weights)
    scores = jax.vmap(member_fit_score, in_axes=(None, 0, None, None, None))(module, params, x_eval, y_eval,
                                                                             informative)
    return (scores * weights).sum(-1) / jnp.maximum(weights.sum(), 1.0)


def _run_epoch(carry: _Carry, x_n: jax.Array, y_n: jax.Array, rows: jax.Array, n_train: Any,
               module: Any, tx: optax.GradientTransformation, config: EnsembleConfig) -> _Carry:
    """One pass over each member's (reshuffled) training set, minibatch by minibatch."""
    key, k_perm = jax.random.split(carry.key)
    n_rows = rows.shape[1]
    noise = jax.random.uniform(k_perm, rows.shape)
    perm = jnp.argsort(jnp.where(jnp.arange(n_rows) < n_train, noise, 2.0), axis=1)  # train positions first
    epoch_rows = jnp.take_along_axis(rows, perm, axis=1)  # [E, N]
    batch = config.batch_size
    n_steps = (n_train + batch - 1) // batch

    def loss_fn(params: Any, xb: jax.Array, yb: jax.Array) -> tuple[jax.Array, jax.Array]:
        per_member = jax.vmap(member_objective, in_axes=(None, 0, 0, 0, None))(
            module, params, xb, yb, config.logvar_bound_penalty)
        return per_member.sum(), per_member  # sum: each member gets its own gradient

    def step(j: Any, inner: tuple[Any, Any, jax.Array]) -> tuple[Any, Any, jax.Array]:
        params, opt_state, loss_sum = inner
        idx = epoch_rows[:, (j * batch + jnp.arange(batch)) % n_train]  # [E, B], wraps on the last batch
        grads, per_member = jax.grad(loss_fn, has_aux=True)(params, x_n[idx], y_n[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss_sum + per_member.mean()

    params, opt_state, loss_sum = jax.lax.fori_loop(0, n_steps, step, (carry.params, carry.opt_state, 0.0))
    return carry.replace(key=key, params=params, opt_state=opt_state, train_loss=loss_sum / n_steps,
                         steps=carry.steps + n_steps)


def _train(key: jax.Array, state: EnsembleState, x_n: jax.Array, y_n: jax.Array, split: _Split,
           config: EnsembleConfig) -> _Carry:
    """Epoch loop with early stopping; returns the final carry (best params in `best_params`)."""
    module, tx = make_module(config, state.out_size), make_optimizer(config)
    k_rows, k_loop = jax.random.split(key)
    rows = _member_train_rows(k_rows, split, x_n.shape[0], config)
    x_eval, y_eval = x_n[split.eval_rows], y_n[split.eval_rows]
    score = functools.partial(_score, module, x_eval=x_eval, y_eval=y_eval, weights=split.eval_weights)
    init_score = score(state.params)
    carry = _Carry(key=k_loop, params=state.params, opt_state=state.opt_state, best_params=state.params,
                   best_score=jnp.where(jnp.isfinite(init_score), init_score, jnp.inf), epoch=jnp.int32(0),
                   since_improved=jnp.int32(0), finite=jnp.array(True), train_loss=jnp.float32(jnp.nan),
                   history=jnp.full((config.epochs,), jnp.nan), steps=jnp.int32(0))

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
            c.params, c.best_params)
        return c.replace(best_params=best_params, best_score=jnp.where(improved, member_score, c.best_score),
                         epoch=c.epoch + 1, since_improved=jnp.where(improved.any(), 0, c.since_improved + 1),
                         finite=finite, history=c.history.at[c.epoch].set(member_score.mean()))

    return jax.lax.while_loop(cond, body, carry)


def _normalised_moments(state: EnsembleState, params: Any, x_n: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Member means and variances in normalised units: [E, N, out]."""
    mean, logvar = jax.vmap(state.module.apply, in_axes=(0, None))(params, x_n)
    if logvar is None:
        return mean, jnp.full_like(mean, state.config.deterministic_std**2)
    return mean, jnp.exp(logvar)


def _heldout_metrics(state: EnsembleState, x_eval: jax.Array, y_eval: jax.Array, weights: jax.Array,
                     config: EnsembleConfig) -> dict[str, jax.Array]:
    """Calibration and accuracy of the elites' mixture on held-out rows (normalised units).

    Outputs that are constant in the data (e.g. a cost that is always 0) are left out of the averages.
    """
    mean, var = _normalised_moments(state, state.params, x_eval)
    mean, var = uncertainty.predictive_moments(mean[state.elite_idx], var[state.elite_idx])
    w = weights[:, None]
    informative = _informative_outputs(y_eval, weights)
    n_out = jnp.maximum(informative.sum(), 1.0)
    count = jnp.maximum(weights.sum(), 1.0) * n_out
    scale = (calibration.fit_calibration_scale(mean, var, y_eval, weights) if config.calibrate
             else jnp.ones(state.out_size))
    nll = gaussian_nll(mean, jnp.log(jnp.maximum(var, 1e-8)), y_eval)

    def over_outputs(per_output: jax.Array) -> jax.Array:
        return (per_output * informative).sum() / n_out

    return dict(
        holdout_nll=(nll * w * informative).sum() / count,
        holdout_mse=(jnp.square(mean - y_eval) * w * informative).sum() / count,
        coverage_1sigma=over_outputs(calibration.coverage(mean, var, y_eval, 1.0, weights)),
        coverage_2sigma=over_outputs(calibration.coverage(mean, var, y_eval, 2.0, weights)),
        ece=calibration.expected_calibration_error(mean, var, y_eval, weights, informative),
        calibrated_ece=calibration.expected_calibration_error(mean, var * scale**2, y_eval, weights, informative),
        calibration_scale=scale,
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _fit(key: jax.Array, state: EnsembleState, batch: Any, mask: jax.Array | None,
         config: EnsembleConfig) -> tuple[EnsembleState, FitMetrics]:
    x = inputs_of(batch).reshape(-1, state.obs_size + state.action_size)
    y = targets_of(batch).reshape(-1, state.out_size)
    mask = None if mask is None else mask.reshape(-1)
    k_split, k_train = jax.random.split(key)
    split = _split(k_split, x.shape[0], mask, config.holdout_fraction)
    norm = norm_lib.from_data(x, y, None if mask is None else mask.astype(x.dtype))
    x_n, y_n = norm_lib.normalize_inputs(norm, x), norm_lib.normalize_targets(norm, y)
    carry = _train(k_train, state.replace(normalizer=norm), x_n, y_n, split, config)
    elites = jnp.argsort(carry.best_score)[: config.num_elites].astype(jnp.int32)
    state = state.replace(params=carry.best_params, normalizer=norm, opt_state=carry.opt_state, elite_idx=elites,
                          step=state.step + carry.steps)
    held = _heldout_metrics(state, x_n[split.eval_rows], y_n[split.eval_rows], split.eval_weights, config)
    state = state.replace(calibration_scale=held["calibration_scale"])
    metrics = FitMetrics(
        train_loss=carry.train_loss, holdout_loss=carry.best_score.mean(), member_holdout_loss=carry.best_score,
        epochs=carry.epoch, holdout_history=carry.history, num_train=jnp.int32(split.n_train),
        num_holdout=jnp.int32(split.n_holdout), finite=carry.finite, **held)
    return state, metrics


def fit(key: jax.Array, state: EnsembleState, batch: Any, config: EnsembleConfig | None = None,
        mask: jax.Array | None = None) -> tuple[EnsembleState, FitMetrics]:
    """Train all members on a Transition batch (leading axes [N] or [T, B]); jitted once per shape/config.

    `config` may change training fields (learning rate, epochs, ...) but not the architecture; `mask`
    ([N] bool) selects valid rows of a fixed-size batch (e.g. `buffer.all_valid`) so the buffer can grow
    without recompiling. Normalisation statistics are recomputed from the valid rows. Returns the new
    state (each member's best held-out parameters, elites, calibration scale) and `FitMetrics`; check
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
