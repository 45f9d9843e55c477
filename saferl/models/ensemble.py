"""Probabilistic ensemble dynamics model: E MLPs stacked under `vmap`, each a Gaussian over
[Δobs, reward, cost] given (obs, action) (PETS, Chua et al. 2018; deterministic mode as in SOOPER).

`init` builds the state, `predict`/`predict_per_member` give per-member means and variances in raw
units, `fit` (saferl.models.fitting) trains all members in one compiled program.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import TYPE_CHECKING, Any, cast

import jax
import jax.numpy as jnp
from flax import serialization, struct

from saferl.errors import UserError
from saferl.models import calibration
from saferl.models import normalizer as norm_lib
from saferl.models.network import ACTIVATIONS, GaussianMLP, MeanLogvar

if TYPE_CHECKING:
    import optax


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    num_members: int = 5  # ensemble size E
    hidden_sizes: tuple[int, ...] = (200, 200, 200)  # hidden layer widths of each member
    activation: str = "silu"  # one of saferl.models.network.ACTIVATIONS
    learning_rate: float = 1e-3  # Adam step size
    weight_decay: float = 1e-5  # decoupled (AdamW) weight decay on kernels
    batch_size: int = 256  # minibatch rows per member per gradient step
    epochs: int = 50  # maximum epochs per `fit` call
    max_steps: int = 0  # stop a `fit` after the epoch that reaches this many gradient steps (0: no limit), ≥ 0
    holdout_fraction: float = 0.1  # share of the data held out for early stopping / elites / calibration
    patience: int = 5  # stop after this many epochs without a relative improvement on held-out data
    improvement_threshold: float = 0.001  # relative held-out improvement that resets the patience counter
    num_elites: int = 5  # members with the best held-out score (state.elite_idx)
    deterministic: bool = False  # no variance head: MSE training, aleatoric σ fixed to deterministic_std
    deterministic_std: float = 0.0  # aleatoric σ reported in deterministic mode, normalised units (≥ 0)
    min_logvar: float = -10.0  # initial lower soft bound of the log-variance (learned)
    max_logvar: float = 0.5  # initial upper soft bound of the log-variance (learned)
    logvar_bound_penalty: float = 0.01  # weight of Σ(max_logvar − min_logvar) in the loss
    bootstrap: bool = True  # each member trains on its own bootstrap resample (else its own shuffling)
    calibrate: bool = True  # fit per-output aleatoric σ scale and epistemic σ growth on held-out data each fit
    region_fraction: float = 0.1  # share held out as unseen feature tails for the epistemic growth, in [0, 0.5)

    def __post_init__(self) -> None:
        positive = ("num_members", "batch_size", "epochs", "patience", "num_elites")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_elites > self.num_members:
            raise ValueError(f"num_elites must be in [1, num_members={self.num_members}], got {self.num_elites}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be a non-empty tuple of positive ints, got {self.hidden_sizes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0 or self.deterministic_std < 0 or self.logvar_bound_penalty < 0:
            raise ValueError(
                "weight_decay, deterministic_std and logvar_bound_penalty must be >= 0, got "
                f"{self.weight_decay}, {self.deterministic_std}, {self.logvar_bound_penalty}"
            )
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.region_fraction < 0.5:
            raise ValueError(f"region_fraction must be in [0, 0.5), got {self.region_fraction}")
        if not self.min_logvar < self.max_logvar:
            raise ValueError(f"min_logvar ({self.min_logvar}) must be < max_logvar ({self.max_logvar})")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 (0: no limit), got {self.max_steps}")
        if self.improvement_threshold < 0:
            raise ValueError(f"improvement_threshold must be >= 0, got {self.improvement_threshold}")


class EnsembleState(struct.PyTreeNode):
    """Everything the model needs to predict and to continue training; a pytree (orbax/msgpack-savable)."""

    params: Any  # flax params of E members stacked on a leading axis [E, ...]
    normalizer: norm_lib.Normalizer  # input/output statistics, refreshed at every fit
    opt_state: Any  # optax state of the stacked params
    elite_idx: jax.Array  # [num_elites] int32, members with the best held-out score
    aleatoric_scale: jax.Array  # [out_dim] a > 0, multiplies member σ's (σ_ale); 1 unless config.calibrate
    # [out_dim] c ≥ 0 (1 / normalised σ): σ_epi × √min(1 + (c·σ_epi,n)², G²); 0 unless config.calibrate
    epistemic_growth: jax.Array
    step: jax.Array  # int32, gradient steps taken so far
    config: EnsembleConfig = struct.field(pytree_node=False)
    obs_size: int = struct.field(pytree_node=False)
    action_size: int = struct.field(pytree_node=False)
    out_size: int = struct.field(pytree_node=False)

    @property
    def module(self) -> GaussianMLP:
        return make_module(self.config, self.out_size)


def make_module(config: EnsembleConfig, out_size: int) -> GaussianMLP:
    """The flax module of one member."""
    return GaussianMLP(
        hidden_sizes=tuple(config.hidden_sizes),
        out_size=out_size,
        activation=config.activation,
        deterministic=config.deterministic,
        init_min_logvar=config.min_logvar,
        init_max_logvar=config.max_logvar,
    )


def make_optimizer(config: EnsembleConfig) -> optax.GradientTransformation:
    """AdamW; weight decay only on dense kernels (not biases or log-variance bounds)."""
    import optax  # here, not at the top: a model that only predicts (a loaded policy's) needs no optax

    def decay_mask(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", "") == "kernel", params)

    return optax.adamw(config.learning_rate, weight_decay=config.weight_decay, mask=decay_mask)


def init(
    key: jax.Array, config: EnsembleConfig, obs_size: int, action_size: int, out_size: int, trainable: bool = True
) -> EnsembleState:
    """Fresh ensemble; out_size = obs_size + 2 for targets [Δobs, reward, cost]. `trainable=False`: without
    optimiser state (`opt_state` = ()), a model that only predicts (what a loaded policy plans on)."""
    if out_size != obs_size + 2:
        raise ValueError(f"out_size must be obs_size + 2 = {obs_size + 2} ([Δobs, reward, cost]), got {out_size}")
    module = make_module(config, out_size)
    dummy = jnp.zeros((1, obs_size + action_size))
    params = jax.vmap(module.init, in_axes=(0, None))(jax.random.split(key, config.num_members), dummy)
    return EnsembleState(
        params=params,
        normalizer=norm_lib.identity(obs_size + action_size, out_size),
        opt_state=make_optimizer(config).init(params) if trainable else (),
        elite_idx=jnp.arange(config.num_elites, dtype=jnp.int32),
        aleatoric_scale=jnp.ones(out_size),
        epistemic_growth=jnp.zeros(out_size),
        step=jnp.zeros((), jnp.int32),
        config=config,
        obs_size=obs_size,
        action_size=action_size,
        out_size=out_size,
    )


def shapes(config: EnsembleConfig, obs_size: int, action_size: int, trainable: bool = True) -> EnsembleState:
    """The state `init` gives, as `jax.ShapeDtypeStruct` leaves (nothing computed): a restore target."""
    return jax.eval_shape(
        lambda key: init(key, config, obs_size, action_size, obs_size + 2, trainable), jax.random.PRNGKey(0)
    )


def _raw_outputs(state: EnsembleState, mean_n: jax.Array, logvar: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Normalised member outputs -> (mean, var) in raw units, before calibration."""
    var_n = jnp.full_like(mean_n, state.config.deterministic_std**2) if logvar is None else jnp.exp(logvar)
    norm = state.normalizer
    return norm_lib.denormalize_targets(norm, mean_n), norm_lib.denormalize_variance(norm, var_n)


@jax.jit
def predict(state: EnsembleState, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every member on the same inputs obs [..., obs_dim], action [..., act_dim].

    Returns mean, var [E, ..., obs_dim + 2] in raw units, outputs ordered [Δobs, reward, cost], calibrated
    per output: member variances scaled by a² (σ_ale -> a·σ_ale) and member means spread about their average
    by √min(1 + (c·σ_epi,n)², G²) ∈ [1, G], σ_epi,n the members' spread in normalised units (σ_epi -> that
    factor · σ_epi; G = `calibration.MAX_SPREAD_FACTOR`). Off the data the error of a mean the members agree on
    outgrows their spread: the factor grows with it, up to G (finite wherever the raw spread is).
    """
    x_n = norm_lib.normalize_inputs(state.normalizer, jnp.concatenate([obs, action], axis=-1))
    mean_n, logvar = cast(MeanLogvar, jax.vmap(state.module.apply, in_axes=(0, None))(state.params, x_n))
    mean, var = _raw_outputs(state, mean_n, logvar)
    center = mean.mean(axis=0, keepdims=True)
    spread = calibration.spread_factor(jnp.var(mean_n, axis=0), state.epistemic_growth)
    return center + spread * (mean - center), var * jnp.square(state.aleatoric_scale)


@jax.jit
def predict_per_member(state: EnsembleState, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Member e sees its own inputs obs [E, ..., obs_dim], action [E, ..., act_dim] (TS∞ particles).

    Returns mean, var [E, ..., obs_dim + 2] in raw units: each member's own predictive Gaussian, uncalibrated.
    The σ calibration describes the ensemble's predictive distribution (`predict`: model env, optimism,
    pessimism, information gain); a particle follows one member's function and noise as trained. Spreading
    member e's mean would need all members at e's own inputs (E× the cost), and scaling its noise by the
    aleatoric scale (≪ 1 on noise-free features) made PETS plans over-confident: on safe_cartpole (seeds
    0, 1) the best return by episode 7 fell from 875 / 921 with raw particles to 541 / 917.
    """
    x_n = norm_lib.normalize_inputs(state.normalizer, jnp.concatenate([obs, action], axis=-1))
    mean_n, logvar = cast(MeanLogvar, jax.vmap(state.module.apply)(state.params, x_n))
    return _raw_outputs(state, mean_n, logvar)


def targets_of(batch: Any) -> jax.Array:
    """Training targets [..., obs_dim + 2] = [next_obs − obs, reward, cost] of a Transition batch."""
    return jnp.concatenate([batch.next_obs - batch.obs, batch.reward[..., None], batch.cost[..., None]], axis=-1)


def inputs_of(batch: Any) -> jax.Array:
    """Model inputs [..., obs_dim + act_dim] = [obs, action] of a Transition batch."""
    return jnp.concatenate([batch.obs, batch.action], axis=-1)


def save(state: EnsembleState, path: str | pathlib.Path) -> pathlib.Path:
    """Write params, normaliser, optimiser state, elites and σ scales (msgpack) plus config (JSON)."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": dataclasses.asdict(state.config),
        "obs_size": state.obs_size,
        "action_size": state.action_size,
        "out_size": state.out_size,
    }
    (path / "ensemble.json").write_text(json.dumps(meta, indent=2))
    (path / "ensemble.msgpack").write_bytes(serialization.to_bytes(state))
    return path


def restore(path: str | pathlib.Path) -> EnsembleState:
    """Read an ensemble written by `save`; raises `UserError` if files are missing or do not match."""
    path = pathlib.Path(path)
    if not (path / "ensemble.json").exists() or not (path / "ensemble.msgpack").exists():
        raise UserError(f"no saved ensemble in {path} (expected ensemble.json and ensemble.msgpack)")
    meta = json.loads((path / "ensemble.json").read_text())
    fields = dict(meta["config"], hidden_sizes=tuple(meta["config"]["hidden_sizes"]))
    template = init(
        jax.random.key(0), EnsembleConfig(**fields), meta["obs_size"], meta["action_size"], meta["out_size"]
    )
    try:
        return serialization.from_bytes(template, (path / "ensemble.msgpack").read_bytes())
    except (ValueError, KeyError) as err:
        raise UserError(f"saved ensemble in {path} does not match its config: {err}") from None


def fit(
    key: jax.Array,
    state: EnsembleState,
    batch: Any,
    config: EnsembleConfig | None = None,
    mask: jax.Array | None = None,
) -> tuple[EnsembleState, Any]:
    """Train all members on `batch` (Transition, leading axis [N]); see `saferl.models.fitting.fit`."""
    from saferl.models import fitting  # fitting builds on this module

    return fitting.fit(key, state, batch, config, mask)
