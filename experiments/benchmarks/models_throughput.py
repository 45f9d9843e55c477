"""Ensemble model throughput on this machine: training (member-samples/s of a whole jitted `fit`) and
forward passes for planning (member-evaluations/s vs batch size). Writes JSON + PNG to results/.

Anchors (shared/REFERENCES.md, 2-core CPU, 5 members 3×200 SiLU, 8 inputs): training ≈ 340k
member-samples/s at 256 rows per member per step; forward 5 × 1000 inputs ≈ 1.1 M/s. Each `fit` is timed
against a bare jitted step on the same stacked-member params and data, in the same run and interleaved
with it (best of the repeats of each), so the ratio holds on a loaded machine too: per step the bare
program gathers the minibatch rows from the normalised data, runs the members' forward pass (einsum),
the Gaussian NLL with the same log-variance bounds, the backward pass and the same AdamW update, as many
steps as the `fit` took, in one `lax.scan`. A bare einsum step on a fixed batch (no gather) is also kept.

    python experiments/benchmarks/models_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

from saferl.data.buffer import Transition
from saferl.models import ensemble, normalizer

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
OBS, ACT = 6, 2  # 8 model inputs, 8 outputs (Δobs, reward, cost) as in the REFERENCES anchor


def synthetic_batch(key: jax.Array, n: int) -> Transition:
    k_obs, k_act, k_noise = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (n, OBS))
    action = jax.random.uniform(k_act, (n, ACT), minval=-1.0, maxval=1.0)
    next_obs = obs + 0.05 * jnp.tanh(obs @ jnp.ones((OBS, OBS)) / OBS + action.sum(-1, keepdims=True))
    next_obs = next_obs + 0.01 * jax.random.normal(k_noise, (n, OBS))
    return Transition(
        obs=obs,
        action=action,
        next_obs=next_obs,
        reward=-jnp.square(obs).sum(-1),
        cost=(obs[:, 0] > 1.0).astype(jnp.float32),
        done=jnp.zeros(n),
    )


def time_call(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls, s (after one warm-up call that also compiles)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def bare_fit_steps(config: ensemble.EnsembleConfig) -> Any:
    """A jitted `run(params, opt_state, x_n, y_n, rows [steps, E, B])`: per step gather, forward, NLL, backward,
    AdamW on the stacked flax params of `ensemble.init` (the model `fit` trains), written out by hand."""
    tx = ensemble.make_optimizer(config)
    hidden = [f"Dense_{i}" for i in range(len(config.hidden_sizes))]

    def dense(layer: dict, h: jax.Array) -> jax.Array:
        return jnp.einsum("ebi,eio->ebo", h, layer["kernel"]) + layer["bias"][:, None]

    def loss(params: dict, xb: jax.Array, yb: jax.Array) -> jax.Array:
        p = params["params"]
        h = xb  # [E, B, in]
        for name in hidden:
            h = jax.nn.silu(dense(p[name], h))
        mean, raw = dense(p["mean"], h), dense(p["logvar"], h)
        high, low = p["max_logvar"][:, None], p["min_logvar"][:, None]
        logvar = low + jax.nn.softplus(high - jax.nn.softplus(high - raw) - low)
        nll = 0.5 * (jnp.square(yb - mean) * jnp.exp(-logvar) + logvar + math.log(2.0 * math.pi))
        penalty = config.logvar_bound_penalty * (p["max_logvar"].sum(-1) - p["min_logvar"].sum(-1))  # [E]
        return (nll.mean(axis=(1, 2)) + penalty).sum()

    @jax.jit
    def run(params: Any, opt_state: Any, x_n: jax.Array, y_n: jax.Array, rows: jax.Array) -> Any:
        def step(carry: Any, idx: jax.Array) -> tuple[Any, None]:
            params, opt_state = carry
            grads = jax.grad(loss)(params, x_n[idx], y_n[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, opt_state), rows)[0]

    return run


def bench_training(config: ensemble.EnsembleConfig, rows: int, repeats: int) -> dict:
    """Whole `fit` (fixed epoch count: patience > epochs) on `rows` transitions, and the bare step program
    doing the same gradient steps, timed alternately (best of `repeats` each)."""
    state = ensemble.init(jax.random.key(0), config, OBS, ACT, OBS + 2)
    batch = synthetic_batch(jax.random.key(1), rows)
    start = time.perf_counter()
    fitted, metrics = jax.block_until_ready(ensemble.fit(jax.random.key(2), state, batch))
    first_call = time.perf_counter() - start
    steps = int(fitted.step - state.step)  # epochs × ⌈training rows / batch⌉
    x, y = ensemble.inputs_of(batch), ensemble.targets_of(batch)
    norm = normalizer.from_data(x, y)
    x_n, y_n = normalizer.normalize_inputs(norm, x), normalizer.normalize_targets(norm, y)
    shape = (steps, config.num_members, config.batch_size)
    train_rows = jax.random.randint(jax.random.key(3), shape, 0, int(metrics.num_train))
    bare = bare_fit_steps(config)
    calls = {
        "fit": lambda: ensemble.fit(jax.random.key(2), state, batch),
        "bare": lambda: bare(state.params, state.opt_state, x_n, y_n, train_rows),
    }
    best = dict.fromkeys(calls, float("inf"))
    jax.block_until_ready(calls["bare"]())  # compiles
    for _ in range(repeats):
        for name, call in calls.items():
            begin = time.perf_counter()
            jax.block_until_ready(call())
            best[name] = min(best[name], time.perf_counter() - begin)
    samples = steps * config.batch_size * config.num_members
    return {
        "rows": rows,
        "epochs": config.epochs,
        "training_rows": int(metrics.num_train),
        "gradient_steps": steps,
        "seconds": best["fit"],
        "compile_and_first_call_s": first_call,
        "member_samples_per_s": samples / best["fit"],
        "steps_per_s": steps / best["fit"],
        "bare_step_seconds": best["bare"],
        "bare_step_member_samples_per_s": samples / best["bare"],
        "fit_over_bare_step": best["bare"] / best["fit"],
    }


def _bare_params(config: ensemble.EnsembleConfig, head: int) -> list[tuple[jax.Array, jax.Array]]:
    """Stacked [E, in, out] weights of a plain MLP with the same sizes (the REFERENCES anchor's model)."""
    sizes = (OBS + ACT, *config.hidden_sizes, head)
    keys = jax.random.split(jax.random.key(0), len(sizes) - 1)
    return [
        (jax.random.normal(k, (config.num_members, a, b)) / a**0.5, jnp.zeros((config.num_members, 1, b)))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=False)
    ]


def _bare_forward(params: list, x: jax.Array) -> jax.Array:
    """x [E, B, in] -> [E, B, head], einsum over stacked members, SiLU."""
    for i, (w, b) in enumerate(params):
        x = jnp.einsum("ebi,eio->ebo", x, w) + b
        x = jax.nn.silu(x) if i < len(params) - 1 else x
    return x


def bench_bare_training_step(config: ensemble.EnsembleConfig, repeats: int, steps: int = 50) -> dict:
    """Baseline measured in the same run: a bare einsum ensemble, Gaussian NLL, Adam, `steps` steps in a scan."""
    params = _bare_params(config, 2 * (OBS + 2))
    tx = optax.adam(config.learning_rate)
    x = jax.random.normal(jax.random.key(1), (config.num_members, config.batch_size, OBS + ACT))
    y = jax.random.normal(jax.random.key(2), (config.num_members, config.batch_size, OBS + 2))

    def loss(p: list) -> jax.Array:
        mean, logvar = jnp.split(_bare_forward(p, x), 2, axis=-1)
        return jnp.mean(jnp.square(y - mean) * jnp.exp(-logvar) + logvar) * config.num_members

    @jax.jit
    def run(p: list, opt_state: Any) -> Any:
        def step(carry: Any, _: None) -> tuple[Any, None]:
            p, o = carry
            updates, o = tx.update(jax.grad(loss)(p), o, p)
            return (optax.apply_updates(p, updates), o), None

        return jax.lax.scan(step, (p, opt_state), None, length=steps)[0]

    opt_state = tx.init(params)
    seconds = time_call(lambda: run(params, opt_state), repeats)
    return {"member_samples_per_s": steps * config.batch_size * config.num_members / seconds}


def bench_forward(config: ensemble.EnsembleConfig, batch_sizes: list[int], repeats: int) -> list[dict]:
    state = ensemble.init(jax.random.key(0), config, OBS, ACT, OBS + 2)
    predict = jax.jit(ensemble.predict)
    rows = []
    for n in batch_sizes:
        obs, action = jnp.ones((n, OBS)), jnp.zeros((n, ACT))
        calls = max(1, 20000 // n)  # several calls per timing so small batches are measurable

        def run(obs=obs, action=action, calls=calls):
            out = None
            for _ in range(calls):
                out = predict(state, obs, action)
            return out

        seconds = time_call(run, repeats) / calls
        bare = jax.jit(_bare_forward)
        params, x = _bare_params(config, 2 * (OBS + 2)), jnp.ones((config.num_members, n, OBS + ACT))
        bare_seconds = (
            time_call(
                lambda bare=bare, params=params, x=x, calls=calls: [bare(params, x) for _ in range(calls)][-1], repeats
            )
            / calls
        )
        rows.append(
            {
                "batch": n,
                "seconds_per_call": seconds,
                "member_evals_per_s": config.num_members * n / seconds,
                "bare_einsum_member_evals_per_s": config.num_members * n / bare_seconds,
            }
        )
    return rows


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fwd, ax_train) = plt.subplots(1, 2, figsize=(10, 4))
    fwd = result["forward"]
    ax_fwd.loglog([r["batch"] for r in fwd], [r["member_evals_per_s"] for r in fwd], "o-", label="saferl predict")
    ax_fwd.loglog(
        [r["batch"] for r in fwd],
        [r["bare_einsum_member_evals_per_s"] for r in fwd],
        "s--",
        label="bare einsum MLP (same run)",
    )
    ax_fwd.axhline(1.1e6, color="gray", ls="--", label="anchor 1.1 M/s (5×1000)")
    ax_fwd.set(xlabel="inputs per member", ylabel="member-evaluations / s", title="forward (jitted predict)")
    ax_fwd.legend()
    train = result["training"]
    labels, values, colors = [], [], []
    for r in train:
        labels += [f"fit\n{r['rows']}", f"bare\n{r['rows']}"]
        values += [r["member_samples_per_s"], r["bare_step_member_samples_per_s"]]
        colors += ["C0", "C1"]
        ax_train.annotate(
            f"{r['fit_over_bare_step']:.2f}×", (len(labels) - 2, r["member_samples_per_s"]), ha="center", va="bottom"
        )
    labels.append("bare einsum\nfixed batch")
    values.append(result["bare_training_step"]["member_samples_per_s"])
    colors.append("C2")
    ax_train.bar(labels, values, color=colors)
    ax_train.axhline(3.4e5, color="gray", ls="--", label="anchor 340k/s")
    load = result["load_average_1min"]
    ax_train.set(
        xlabel=f"transitions in fit (fit ÷ bare step above the bar); load {load['before']:.1f}–{load['after']:.1f}",
        ylabel="member-samples / s",
        title="training: whole jitted fit vs bare step, same run",
    )
    ax_train.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat (smoke run)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    train_repeats = 2 if args.quick else 7  # fit and bare step alternate: best of these
    config = ensemble.EnsembleConfig(
        num_members=5, hidden_sizes=(200, 200, 200), batch_size=256, epochs=2 if args.quick else 5, patience=100
    )
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "config": {
            "num_members": 5,
            "hidden_sizes": [200, 200, 200],
            "inputs": OBS + ACT,
            "outputs": OBS + 2,
            "batch_size": 256,
        },
        "training": [bench_training(config, rows, train_repeats) for rows in ([4000] if args.quick else [4000, 20000])],
        "bare_training_step": bench_bare_training_step(config, repeats),
        "forward": bench_forward(config, [1, 10, 100, 1000] if args.quick else [1, 10, 40, 100, 1000, 4000], repeats),
    }
    result["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models_throughput.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "models_throughput.png")
    print(f"machine load (1-min average) {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for row in result["training"]:
        print(
            f"train rows={row['rows']:6d}: fit {row['member_samples_per_s'] / 1e3:7.1f}k member-samples/s "
            f"({row['seconds']:.2f} s, first call {row['compile_and_first_call_s']:.2f} s), bare step "
            f"{row['bare_step_member_samples_per_s'] / 1e3:7.1f}k, fit / bare {row['fit_over_bare_step']:.3f}"
        )
    print(
        f"bare einsum train step on a fixed batch (same run): "
        f"{result['bare_training_step']['member_samples_per_s'] / 1e3:7.1f}k member-samples/s"
    )
    for row in result["forward"]:
        print(
            f"forward batch={row['batch']:5d}: {row['member_evals_per_s'] / 1e6:6.3f} M member-evals/s "
            f"(bare einsum {row['bare_einsum_member_evals_per_s'] / 1e6:6.3f} M)"
        )


if __name__ == "__main__":
    main()
