"""Tiny shared configs so every test module compiles the same programs (memoised in-process, cached on disk)."""

PPO_TINY = {
    "num_envs": 4,
    "batch_size": 4,
    "num_minibatches": 2,
    "unroll_length": 8,
    "num_updates_per_batch": 1,
    "iterations_per_chunk": 2,
    "policy_hidden_sizes": [16],
    "value_hidden_sizes": [16],
    "checkpoint_every": 256,
}
PPO_CHUNK = 4 * 2 * 8 * 2  # env steps per chunk of PPO_TINY (batch_size·num_minibatches·unroll·iterations)
SAC_TINY = {
    "num_envs": 4,
    "batch_size": 16,
    "grad_updates_per_step": 1,
    "max_replay_size": 1024,
    "min_replay_size": 64,
    "iterations_per_chunk": 16,
    "hidden_sizes": [16],
    "checkpoint_every": 128,
}
SAC_CHUNK = 4 * 16
ENV_TINY = {"episode_length": 40}  # short pendulum episodes so that episodes end within a few chunks

# PETS: the point of these is the loop, not learning (see tests/agents/test_pets_learning.py)
PETS_TINY = {
    "model.num_members": 2,
    "model.num_elites": 2,
    "model.hidden_sizes": [32, 32],
    "model.epochs": 3,
    "model.batch_size": 32,
    "rollout.num_particles": 2,
    "planner.horizon": 5,
    "planner.population": 32,
    "planner.num_elites": 4,
    "planner.iterations": 2,
    "action_repeat": 2,
    "buffer_capacity": 500,
}
PETS_EPISODE = 20  # env steps per PETS episode (10 planned actions with action_repeat 2)
PETS_ENV = {"episode_length": PETS_EPISODE}

# SOOPER on safe_cartpole with short episodes and a narrow band (so costs occur and the shield has work): a tiny
# SAC prior (SAC_TINY, 6 chunks) and a tiny learner
SOOPER_ENV = {"episode_length": 40, "cost_budget": 5.0, "cost_bound": 0.02}
SOOPER_PRIOR_STEPS = 6 * SAC_CHUNK
SOOPER_TINY = {
    "model.num_members": 2,
    "model.num_elites": 2,
    "model.hidden_sizes": [32, 32],
    "model.epochs": 3,
    "model.batch_size": 32,
    "particles": 2,
    "planner.horizon": 4,
    "planner.population": 16,
    "planner.num_elites": 4,
    "planner.iterations": 2,
    "replan_every": 2,
    "critic_updates": 4,
    "critic_batch_size": 16,
    "buffer_capacity": 400,
}
SOOPER_EPISODE = 40

# SoftAE: PETS's tiny sizes (the loop and the policies, not learning: see tests/agents/test_softae_learning.py)
SOFTAE_TINY = {
    "model.num_members": 2,
    "model.num_elites": 2,
    "model.hidden_sizes": [32, 32],
    "model.epochs": 3,
    "model.batch_size": 32,
    "task_rollout.num_particles": 2,
    "planner.horizon": 5,
    "planner.population": 32,
    "planner.num_elites": 4,
    "planner.iterations": 2,
    "action_repeat": 2,
    "buffer_capacity": 500,
}
