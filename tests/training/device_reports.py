"""What tests/training/test_sharding.py measures in a process with a given number of (forced CPU) devices.

The device count of a JAX process is fixed when its backend starts, so the 4-device reports come from one
subprocess (`python device_reports.py OUT_DIR`, started with `--xla_force_host_platform_device_count=4`) that
writes all three of them, while the test process writes the 1-device PPO report itself (`ppo_report`). Each
report is a JSON file and an .npz of arrays under OUT_DIR, named `{name}{device count}`.
"""

from __future__ import annotations

import json
import pathlib
import sys

if __name__ == "__main__":  # the 4-device subprocess: the test session's cache (SAFERL_JAX_CACHE, inherited)
    from saferl.compilation_cache import enable_compilation_cache

    enable_compilation_cache()  # before JAX is imported (it sets XLA's log level)

import envs  # before JAX's backend starts: envs adds the XLA flags MJX needs


def _write(out: pathlib.Path, name: str, report: dict, arrays: dict) -> None:
    import numpy as np

    np.savez(out / f"{name}.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    (out / f"{name}.json").write_text(json.dumps(report))


def ppo_report(out: pathlib.Path) -> None:
    """One PPO_TINY chunk (num_envs 4) on pendulum with ENV_TINY from PRNGKey(7): where the env states and
    params live, whether a start state that sits on one device (as a restored one may) trains to the same bits,
    the UserError for num_envs=2; arrays: the final state's leaves (`leaf_i`) and the metrics (`metric_k`).
    Written as `ppo{device count}`."""
    import jax
    import numpy as np
    from tiny_configs import ENV_TINY, PPO_TINY

    from saferl.agents import ppo
    from saferl.config import apply_overrides
    from saferl.errors import UserError

    env = envs.make("pendulum", **ENV_TINY)
    config = apply_overrides(ppo.PPOConfig(), PPO_TINY)
    init, train_chunk = ppo.make_train(config, env)
    start = init(jax.random.PRNGKey(7))
    state, metrics = train_chunk(start)
    env_leaves = [x for x in jax.tree.leaves(state.env_state) if x.size]  # MJX has zero-size leaves: no data
    report = {
        "devices": jax.device_count(),
        "env_devices": sorted({len(x.sharding.device_set) for x in env_leaves}),
        "env_shard_rows": sorted({s.data.shape[0] for x in env_leaves for s in x.addressable_shards}),
        "env_rows": sorted({x.shape[0] for x in env_leaves}),
        "params_replicated": all(
            x.sharding.is_fully_replicated and len(x.sharding.device_set) == jax.device_count()
            for x in jax.tree.leaves(state.params)
        ),
    }
    again, _ = train_chunk(jax.device_put(start, jax.devices()[0]))
    report["one_device_input_same"] = all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=False)
    )
    try:
        ppo.make_train(apply_overrides(config, {"num_envs": 2}), env)
        report["user_error"] = None
    except UserError as err:
        report["user_error"] = str(err)
    arrays = {f"leaf_{i}": x for i, x in enumerate(jax.tree.leaves(state))}
    arrays.update({f"metric_{k}": v for k, v in metrics.items()})
    _write(out, f"ppo{jax.device_count()}", report, arrays)


def model_report(out: pathlib.Path, counts: tuple[int, ...] = (4, 1)) -> None:
    """A tiny ensemble (2 members, 32x32) fitted for 4 epochs on 256 transitions of a damped 3-d system
    (minibatch 32, 25 held-out rows: 32 splits over 4 devices, 25 does not) and an iCEM plan on it (32 then 25
    candidates: the second iteration pads 3), once per mesh size in `counts` (`sharding.use_devices`): the
    params, plan, held-out scores and whether the compiled programs hold collectives (an all-reduce of the
    gradients; gathers of the candidates). Written as `model{device count}`."""
    import jax
    import jax.numpy as jnp

    from saferl import sharding
    from saferl.agents.pets.policy import model_fns
    from saferl.data.buffer import Transition
    from saferl.models import ensemble, fitting
    from saferl.planning import ICEMConfig, ObjectiveConfig, RolloutConfig, icem, make_objective, make_rollout_fn

    k_obs, k_act = jax.random.split(jax.random.PRNGKey(0))
    obs = jax.random.uniform(k_obs, (256, 3), minval=-1, maxval=1)
    action = jax.random.uniform(k_act, (256, 1), minval=-1, maxval=1)
    delta = 0.1 * jnp.tanh(obs[:, ::-1] + action) - 0.05 * obs
    data = Transition(
        obs=obs,
        action=action,
        next_obs=obs + delta,
        reward=-jnp.sum(obs**2, -1),
        cost=jnp.zeros(256),
        done=jnp.zeros(256),
    )
    config = ensemble.EnsembleConfig(
        num_members=2,
        num_elites=2,
        hidden_sizes=(32, 32),
        batch_size=32,
        epochs=4,
        patience=100,
        improvement_threshold=0.0,
        calibrate=False,
    )
    planner = ICEMConfig(horizon=5, population=30, num_elites=4, iterations=2)
    rollout = RolloutConfig(propagation="ts1", num_particles=2)

    @jax.jit
    def plan(model, obs0, key):
        rollout_fn = make_rollout_fn(model_fns(model), rollout, obs0)
        actions, info = icem.plan(
            planner, key, rollout_fn, make_objective(ObjectiveConfig()), icem.init_state(planner, 1)
        )
        return actions, info.best_value

    def collectives(hlo):
        return sorted(op for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute") if op in hlo)

    arrays, runs = {}, {}
    for count in counts:
        sharding.use_devices(count)
        model = ensemble.init(jax.random.PRNGKey(1), config, 3, 1, 5)
        model, metrics = ensemble.fit(jax.random.PRNGKey(2), model, data)
        actions, value = plan(model, obs[0], jax.random.PRNGKey(3))
        fit_hlo = fitting._fit.lower(jax.random.PRNGKey(2), model, data, None, config=config).compile().as_text()
        plan_hlo = plan.lower(model, obs[0], jax.random.PRNGKey(3)).compile().as_text()
        arrays.update({f"d{count}_param_{i}": x for i, x in enumerate(jax.tree.leaves(model.params))})
        arrays.update(
            {
                f"d{count}_actions": actions,
                f"d{count}_value": value,
                f"d{count}_holdout": metrics.member_holdout_loss,
                f"d{count}_epochs": metrics.epochs,
            }
        )
        runs[count] = {
            "mesh": sharding.device_count(),
            "fit": collectives(fit_hlo),
            "plan": collectives(plan_hlo),
            "params_devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(model.params)}),
        }
    sharding.use_devices(None)
    _write(out, f"model{jax.device_count()}", {"available": jax.device_count(), "runs": runs}, arrays)


def seeds_report(out: pathlib.Path) -> None:
    """Seeds 7 and 8 of one PPO_TINY chunk vmapped (`seeds.vmapped`) next to seed 7 alone (`make_train`, the
    chunk `ppo_report` compiles): where the seed-batched env states live, and both runs' metrics. Written as
    `seeds{device count}` (no arrays)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from tiny_configs import ENV_TINY, PPO_TINY

    from saferl.agents import ppo
    from saferl.agents.ppo.train import make_parts
    from saferl.config import apply_overrides
    from saferl.training import seeds

    env = envs.make("pendulum", **ENV_TINY)
    config = apply_overrides(ppo.PPOConfig(), PPO_TINY)
    init_seeds, chunk_seeds, _ = seeds.vmapped(make_parts(config, env))
    state, metrics = chunk_seeds(init_seeds(jnp.stack([jax.random.PRNGKey(7), jax.random.PRNGKey(8)])))
    init, train_chunk = ppo.make_train(config, env)
    _, single = train_chunk(init(jax.random.PRNGKey(7)))
    env_leaves = [x for x in jax.tree.leaves(state.env_state) if x.size]
    report = {
        "devices": jax.device_count(),
        "env_shards": sorted({s.data.shape[:2] for x in env_leaves for s in x.addressable_shards}),
        "params_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params)),
        "seeds": {k: np.asarray(v).tolist() for k, v in metrics.items()},
        "single": {k: float(v) for k, v in single.items()},
    }
    _write(out, f"seeds{jax.device_count()}", report, {})


REPORTS = {"ppo": ppo_report, "model": model_report, "seeds": seeds_report}


def main(argv: list[str]) -> None:
    """`python device_reports.py OUT_DIR [NAME ...]`: the named reports (default: all) in this process."""
    out = pathlib.Path(argv[0])
    for name in argv[1:] or list(REPORTS):
        REPORTS[name](out)


if __name__ == "__main__":
    main(sys.argv[1:])  # tiny_configs is found next to this script (sys.path[0])
