"""Ensemble model throughput on this machine: training (member-samples/s of a whole jitted `fit`) and
forward passes for planning (member-evaluations/s vs batch size). Writes JSON + PNG to results/.

Anchors (shared/REFERENCES.md, 2-core CPU, 5 members 3×200 SiLU, 8 inputs): training ≈ 340k
member-samples/s at 256 rows per member per step; forward 5 × 1000 inputs ≈ 1.1 M/s.

    python experiments/benchmarks/models_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp

from saferl.data.buffer import Transition
from saferl.models import ensemble

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
OBS, ACT = 6, 2  # 8 model inputs, 8 outputs (Δobs, reward, cost) as in the REFERENCES anchor


def synthetic_batch(key: jax.Array, n: int) -> Transition:
    k_obs, k_act, k_noise = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (n, OBS))
    action = jax.random.uniform(k_act, (n, ACT), minval=-1.0, maxval=1.0)
    next_obs = obs + 0.05 * jnp.tanh(obs @ jnp.ones((OBS, OBS)) / OBS + action.sum(-1, keepdims=True))
    next_obs = next_obs + 0.01 * jax.random.normal(k_noise, (n, OBS))
    return Transition(obs=obs, action=action, next_obs=next_obs, reward=-jnp.square(obs).sum(-1),
                      cost=(obs[:, 0] > 1.0).astype(jnp.float32), done=jnp.zeros(n))


def time_call(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls, s (after one warm-up call that also compiles)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def bench_training(config: ensemble.EnsembleConfig, rows: int, repeats: int) -> dict:
    """Whole `fit` (fixed epoch count: patience > epochs) on `rows` transitions."""
    state = ensemble.init(jax.random.key(0), config, OBS, ACT, OBS + 2)
    batch = synthetic_batch(jax.random.key(1), rows)
    start = time.perf_counter()
    jax.block_until_ready(ensemble.fit(jax.random.key(2), state, batch))
    first_call = time.perf_counter() - start
    seconds = time_call(lambda: ensemble.fit(jax.random.key(2), state, batch), repeats)
    n_train = rows - int(rows * config.holdout_fraction)
    steps = config.epochs * -(-n_train // config.batch_size)
    samples = steps * config.batch_size * config.num_members
    return {"rows": rows, "epochs": config.epochs, "gradient_steps": steps, "seconds": seconds,
            "compile_and_first_call_s": first_call, "member_samples_per_s": samples / seconds,
            "steps_per_s": steps / seconds}


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
        rows.append({"batch": n, "seconds_per_call": seconds,
                     "member_evals_per_s": config.num_members * n / seconds})
    return rows


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fwd, ax_train) = plt.subplots(1, 2, figsize=(10, 4))
    fwd = result["forward"]
    ax_fwd.loglog([r["batch"] for r in fwd], [r["member_evals_per_s"] for r in fwd], "o-", label="saferl predict")
    ax_fwd.axhline(1.1e6, color="gray", ls="--", label="anchor 1.1 M/s (5×1000)")
    ax_fwd.set(xlabel="inputs per member", ylabel="member-evaluations / s", title="forward (jitted predict)")
    ax_fwd.legend()
    train = result["training"]
    ax_train.bar([str(r["rows"]) for r in train], [r["member_samples_per_s"] for r in train])
    ax_train.axhline(3.4e5, color="gray", ls="--", label="anchor 340k/s")
    ax_train.set(xlabel="transitions in fit", ylabel="member-samples / s", title="training (whole jitted fit)")
    ax_train.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat (smoke run)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    config = ensemble.EnsembleConfig(num_members=5, hidden_sizes=(200, 200, 200), batch_size=256,
                                     epochs=2 if args.quick else 5, patience=100)
    result = {
        "device": str(jax.devices()[0]), "platform": platform.platform(), "jax": jax.__version__,
        "config": {"num_members": 5, "hidden_sizes": [200, 200, 200], "inputs": OBS + ACT, "outputs": OBS + 2,
                   "batch_size": 256},
        "training": [bench_training(config, rows, repeats) for rows in ([4000] if args.quick else [4000, 20000])],
        "forward": bench_forward(config, [1, 10, 100, 1000] if args.quick else [1, 10, 40, 100, 1000, 4000],
                                 repeats),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models_throughput.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "models_throughput.png")
    for row in result["training"]:
        print(f"train rows={row['rows']:6d}: {row['member_samples_per_s'] / 1e3:7.1f}k member-samples/s "
              f"({row['seconds']:.2f} s, first call {row['compile_and_first_call_s']:.2f} s)")
    for row in result["forward"]:
        print(f"forward batch={row['batch']:5d}: {row['member_evals_per_s'] / 1e6:6.3f} M member-evals/s")


if __name__ == "__main__":
    main()
