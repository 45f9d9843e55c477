"""Compiled-function caches (`make_train` of PPO/SAC, PETS `make_agent`) key on everything that changes the
computation: an env with the same class and config but other physics (`dynamics_shift`), or another training
world (randomisation, noise, delay), never gets the closures built for the nominal env."""

import envs
from saferl import sharding
from saferl.agents import pets, ppo, sac
from saferl.agents.modelfree.common import computation_key
from saferl.config import apply_overrides

TINY_ENV = {"episode_length": 20}


def test_computation_key_sees_physics_and_world_but_not_object_identity():
    config = sac.SACConfig()
    nominal, again = envs.make("safe_cartpole", **TINY_ENV), envs.make("safe_cartpole", **TINY_ENV)
    heavy = envs.dynamics_shift("safe_cartpole", body_mass_scale={"pole": 2.0}, **TINY_ENV)
    world = envs.TrainingEnvConfig()
    noisy = envs.TrainingEnvConfig(obs_noise_std=0.05)
    assert computation_key(config, nominal, world) == computation_key(config, again, world)
    assert computation_key(config, nominal, world) != computation_key(config, heavy, world)
    assert computation_key(config, nominal, world) != computation_key(config, nominal, noisy)
    assert computation_key(config, nominal, world) != computation_key(
        apply_overrides(config, {"constraint.kind": "crpo"}), nominal, world
    )


def test_computation_key_names_the_mesh_devices(monkeypatch):
    # `use_devices(n)` changes the mesh a trainer is built on; a cached make_train holds the old mesh
    config, env, world = ppo.PPOConfig(), envs.make("pendulum", **TINY_ENV), envs.TrainingEnvConfig()
    before = computation_key(config, env, world)
    assert computation_key(config, env, world) == before
    real = sharding.devices()
    monkeypatch.setattr(sharding, "devices", lambda: real + real)  # as if the mesh had grown
    assert computation_key(config, env, world) != before


def test_every_trainer_cache_separates_shifted_physics():
    nominal = envs.make("pendulum", **TINY_ENV)
    heavy = envs.dynamics_shift("pendulum", gravity_scale=2.0, **TINY_ENV)
    for module, config in (
        (sac, sac.SACConfig(num_envs=2, max_replay_size=64, min_replay_size=8)),
        (ppo, ppo.PPOConfig(num_envs=2, batch_size=2, num_minibatches=1)),
    ):
        assert module.make_train(config, nominal) is module.make_train(config, envs.make("pendulum", **TINY_ENV))
        assert module.make_train(config, nominal) is not module.make_train(config, heavy)
    config = pets.PETSConfig()
    assert pets.make_agent(config, nominal) is not pets.make_agent(config, heavy)
    assert pets.make_agent(config, nominal) is not pets.make_agent(
        config, nominal, envs.TrainingEnvConfig(action_delay=1)
    )
