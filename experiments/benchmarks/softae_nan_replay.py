"""Replay of issue #31's non-finite plan value: `saferl train softae --env soft_arm --seed 1` episodes 1-2 exactly as
the CLI runs them (EpisodeRunner, PRNGKey(seed)), then episode 3's collection with the episode-2 model under its
calibrated σ scales, the raw ones (a = 1, c = 0) and each scale alone, and 100 random action sequences × 10 imagined
steps from 10 real states of episode 3: per imagined step the largest |normalised input|, calibrated and raw member
spread σ²_epi, smallest σ²_ale and the information gain.

    python experiments/benchmarks/softae_nan_replay.py CODE_DIR soft_arm 1 2 rollout.state_bound=0

CODE_DIR: the checkout whose saferl/envs are imported (e.g. a `git worktree` of an older commit). The issue's
failure needs `rollout.state_bound=0` (the bound on imagined states, the default since f8b4739, hides it).
Outputs: experiments/benchmarks/results/softae_nan_replay_*.txt.
"""

import sys

sys.path.insert(0, sys.argv.pop(1))  # the checkout under test

import jax
import jax.numpy as jnp
import numpy as np

import envs  # noqa: F401  (before any JAX computation: the XLA flags MJX's soft robots need)
from saferl.agents.pets.policy import model_fns
from saferl.agents.pets.train import EpisodeRunner
from saferl.agents.softae import SoftAEConfig, make_agent
from saferl.config import apply_overrides, parse_overrides
from saferl.models import ensemble
from saferl.models import normalizer as norm_lib
from saferl.planning.rollout import rollout


def main() -> None:
    from saferl.training.run import build_training_env, resolve_world

    env_name, seed, upto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = apply_overrides(SoftAEConfig(), parse_overrides(sys.argv[4:]))
    env_config, world = resolve_world(env_name, {})
    agent = make_agent(config, build_training_env(env_name, env_config, world), world)
    runner = EpisodeRunner(agent)
    state = agent.init(jax.random.PRNGKey(seed))
    for episode in range(1, upto + 1):
        state, row = runner(state)
        a, c = np.asarray(state.model.aleatoric_scale), np.asarray(state.model.epistemic_growth)
        print(
            f"ep {episode} cost {row['episode_cost']:.0f} plan_value {row.get('plan_value')} "
            f"a[min {a.min():.3g} max {a.max():.3g}] c[max {c.max():.3g}] #c>0 {(c > 0).sum()}",
            flush=True,
        )
    np.set_printoptions(precision=3, linewidth=200)
    print("a", a)
    print("c", c)
    model = state.model
    _, collect_key, _ = jax.random.split(state.key, 3)  # episode 3's collection key, as EpisodeRunner splits it
    ones, zeros = jnp.ones_like(model.aleatoric_scale), jnp.zeros_like(model.epistemic_growth)
    variants = {
        "calibrated": model,
        "raw (a=1,c=0)": model.replace(aleatoric_scale=ones, epistemic_growth=zeros),
        "a only (c=0)": model.replace(epistemic_growth=zeros),
        "c only (a=1)": model.replace(aleatoric_scale=ones),
    }
    collect = agent.compiled_collect(model, collect_key)  # the run's own compiled program (no second trace)
    for name, variant in variants.items():
        transitions, stats = collect(variant, collect_key, jnp.array(False))
        print(f"{name}: episode-3 plan_value {float(stats.plan_value):.4g} cost {float(stats.episode_cost):.0f}")
        if name == "calibrated":
            starts = transitions.obs[:: max(transitions.obs.shape[0] // 10, 1)]
    actions = jax.random.uniform(
        jax.random.PRNGKey(7), (100, config.planner.horizon, agent.action_size), minval=-1, maxval=1
    )

    @jax.jit
    def probe(variant, obs0):
        trajectory = rollout(jax.random.PRNGKey(0), model_fns(variant), config.rollout, obs0, actions)
        obs, acts = trajectory.obs[:, 0, :-1], trajectory.actions[:, 0]  # [N, H, ...] the imagined inputs
        mean, var = ensemble.predict(variant, obs, acts)
        raw_mean, _ = ensemble.predict(variant.replace(aleatoric_scale=ones, epistemic_growth=zeros), obs, acts)
        x_n = norm_lib.normalize_inputs(variant.normalizer, jnp.concatenate([obs, acts], -1))
        return {
            "max_abs_obs": jnp.abs(obs).max((0, 2)),
            "max_abs_xn": jnp.abs(x_n).max((0, 2)),
            "epi_var_cal": jnp.var(mean, 0).max((0, 2)),
            "epi_var_raw": jnp.var(raw_mean, 0).max((0, 2)),
            "ale_var_cal": var.mean(0).min((0, 2)),
            "gain": trajectory.info_gain[:, 0].max(0),
            "gain_finite": jnp.isfinite(trajectory.info_gain).all(),
        }

    for name, variant in variants.items():
        outs = [jax.device_get(probe(variant, obs0)) for obs0 in starts]
        print(f"-- 100 random action sequences x 10 steps from 10 real states of episode 3, {name}: per imagined step")
        for key in outs[0]:
            stacked = np.stack([out[key] for out in outs])
            print(f"   {key}: {stacked.min(0) if key == 'ale_var_cal' else stacked.max(0)}")


if __name__ == "__main__":
    main()
