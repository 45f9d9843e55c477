# %% [markdown]
# # 02 — Probabilistic ensemble models
#
# The dynamics model every model-based agent shares (`saferl.models`): E Gaussian MLPs predicting
# [Δobs, reward, cost] from (obs, action), trained in one compiled program (`saferl.models.fit`), with
# per-output σ calibration fitted on held-out data. Here: fit it on a small pendulum data set, check its
# calibration (empirical coverage of central intervals against their nominal probability, before and after
# calibration, on fresh test data), and look at the two kinds of uncertainty inside and outside the data:
# epistemic σ (members disagree: no data there) grows off the data, aleatoric σ (the noise the data showed) does not.
#
# Budget: `small` collects 32 × 25 transitions and trains ≤ 40 epochs; `full` 64 × 100 and ≤ 200 epochs.

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()

# %% [markdown]
# ## A small data set
# Pendulum (obs [cos θ, sin θ, θ̇]) from its hanging start under uniform random torques: its weak motor keeps
# the pole near the bottom, so the data cover small speeds only. Gaussian sensor noise (σ = 0.02) is added to
# the next observations, so the model has an aleatoric part to learn and we know its true size.

# %%
import jax
import jax.numpy as jnp
import numpy as np

import envs
from saferl.data.buffer import Transition

ENV = envs.make("pendulum")
NOISE_STD = 0.02  # sensor noise on next_obs (obs units)
BATCH, STEPS = (32, 25) if BUDGET == "small" else (64, 100)


def collect(key):
    """Transition [BATCH·STEPS] of random-torque episodes from the env's own reset distribution."""
    reset_key, action_key, noise_key = jax.random.split(key, 3)
    state = jax.vmap(ENV.reset)(jax.random.split(reset_key, BATCH))
    actions = jax.random.uniform(action_key, (STEPS, BATCH, ENV.action_size), minval=-1.0, maxval=1.0)

    def step(state, action):
        next_state = jax.vmap(ENV.step)(state, action)
        return next_state, (state.obs, action, next_state.obs, next_state.reward, next_state.info["cost"])

    _, (obs, action, next_obs, reward, cost) = jax.lax.scan(step, state, actions)
    next_obs = next_obs + NOISE_STD * jax.random.normal(noise_key, next_obs.shape)

    def flat(x):
        return x.reshape(BATCH * STEPS, *x.shape[2:])

    return Transition(
        obs=flat(obs),
        action=flat(action),
        next_obs=flat(next_obs),
        reward=flat(reward),
        cost=flat(cost),
        done=jnp.zeros(BATCH * STEPS),
    )


compile_s, run_s, train_data, compiled_collect = nb.compile_and_run(collect, jax.random.PRNGKey(0), repeats=1)
test_data = compiled_collect(jax.random.PRNGKey(1))  # fresh episodes from the same distribution
speed_limit = float(jnp.abs(train_data.obs[:, 2]).max())
print(
    f"{train_data.reward.shape[0]} transitions; collection compile {compile_s:.1f} s, run {run_s:.3f} s; "
    f"|θ̇| in the data ≤ {speed_limit:.2f} rad/s"
)

# %% [markdown]
# ## Fit
# `saferl.models.init` + `saferl.models.fit`: bootstrapped members, early stopping on a random held-out split,
# per-output aleatoric scale a and epistemic growth c fitted on held-out rows and on a held-out region (the
# tails of the input features). The first `fit` compiles, the second (same shapes) only runs.

# %%
import time

from saferl import models

CONFIG = models.EnsembleConfig(
    num_members=5,
    num_elites=5,
    hidden_sizes=(64, 64),
    batch_size=64,
    epochs=40 if BUDGET == "small" else 200,
    patience=10,
)
state0 = models.init(jax.random.PRNGKey(2), CONFIG, ENV.observation_size, ENV.action_size, ENV.observation_size + 2)
timings = []
for attempt in ("first fit (compile + run)", "second fit (run only)"):
    start = time.perf_counter()
    state, metrics = models.fit(jax.random.PRNGKey(3), state0, train_data)
    jax.block_until_ready(state.params)
    timings.append([attempt, round(time.perf_counter() - start, 2), int(metrics.epochs)])
nb.table(["call", "seconds", "epochs"], timings)
print(
    {
        k: round(v, 3)
        for k, v in metrics.to_dict().items()
        if k
        in (
            "holdout_nll",
            "holdout_mse",
            "coverage_1sigma",
            "calibrated_coverage_1sigma",
            "ece",
            "calibrated_ece",
            "region_coverage_1sigma",
            "calibrated_region_coverage_1sigma",
        )
    }
)

# %% [markdown]
# ## Calibration
# Fraction of test targets inside the central interval of probability p of the model's predictive
# (moment-matched mixture) Gaussian, per level p, averaged over the outputs that vary (the pendulum's cost is
# always 0). A calibrated model lies on the diagonal. "raw": a = 1, c = 0; "calibrated": the fitted scales.

# %%
import matplotlib.pyplot as plt
from jax.scipy.special import erfinv

from saferl.models import calibration, uncertainty

raw_state = state.replace(
    aleatoric_scale=jnp.ones_like(state.aleatoric_scale), epistemic_growth=jnp.zeros_like(state.epistemic_growth)
)
targets = models.ensemble.targets_of(test_data)
informative = np.asarray(targets.std(0) > 0)
levels = np.asarray(calibration.LEVELS)


def coverage_curve(model_state):
    mean, var = uncertainty.predictive_moments(*models.predict(model_state, test_data.obs, test_data.action))
    abs_z = np.abs(np.asarray(targets - mean)) / np.sqrt(np.asarray(var))
    thresholds = np.sqrt(2.0) * np.asarray(erfinv(levels))
    return np.array([(abs_z[:, informative] <= t).mean() for t in thresholds])


curves = {"raw": coverage_curve(raw_state), "calibrated": coverage_curve(state)}
fig, axis = plt.subplots(figsize=(4.2, 4))
axis.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
for label, curve in curves.items():
    axis.plot(levels, curve, marker="o", ms=3, label=f"{label} (ECE {np.abs(curve - levels).mean():.3f})")
axis.set_xlabel("nominal probability of the central interval")
axis.set_ylabel("empirical coverage on test data")
axis.set_title("calibration (pendulum, held-out episodes)")
axis.legend()
nb.show(fig)

# %% [markdown]
# ## Epistemic vs aleatoric σ inside and outside the data
# Predictions at the hanging pole (θ = π, no torque) over a sweep of speeds θ̇ well past the data. For the
# Δθ̇ output: epistemic σ (spread of member means) and aleatoric σ (mean member σ), calibrated.

# %%
speeds = np.linspace(-4 * speed_limit, 4 * speed_limit, 161)
sweep_obs = jnp.stack([-jnp.ones_like(speeds), jnp.zeros_like(speeds), speeds], axis=-1).astype(jnp.float32)
mean, var = models.predict(state, sweep_obs, jnp.zeros((len(speeds), ENV.action_size)))
epistemic = np.asarray(uncertainty.epistemic_std(mean))[:, 2]
aleatoric = np.asarray(uncertainty.aleatoric_std(var))[:, 2]
inside = np.abs(speeds) <= speed_limit

fig, axis = plt.subplots(figsize=(6.5, 3.6))
axis.axvspan(-speed_limit, speed_limit, color="0.9", label="speeds in the data")
axis.semilogy(speeds, epistemic, label="epistemic σ (members disagree)")
axis.semilogy(speeds, aleatoric, label="aleatoric σ (learned noise)")
axis.axhline(NOISE_STD, color="k", ls=":", lw=1, label=f"true sensor noise {NOISE_STD}")
axis.set_xlabel("θ̇ (rad/s) at θ = π")
axis.set_ylabel("σ of Δθ̇ (rad/s)")
axis.legend(fontsize=8)
nb.show(fig)
nb.table(
    ["region", "mean epistemic σ", "mean aleatoric σ", "epistemic / aleatoric"],
    [
        [
            name,
            float(epistemic[mask].mean()),
            float(aleatoric[mask].mean()),
            float(epistemic[mask].mean() / aleatoric[mask].mean()),
        ]
        for name, mask in (("inside the data", inside), ("outside the data", ~inside))
    ],
)
# off the data the members disagree: far more epistemic σ there than inside (measured ≈ 80× small, ≈ 16× full)
assert epistemic[~inside].mean() > 10 * epistemic[inside].mean(), (epistemic[~inside].mean(), epistemic[inside].mean())
