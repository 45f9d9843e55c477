"""A pure-jnp env for the policy tests (no MJX: compiles in milliseconds) and policies built on it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from saferl.policies import Policy, stateless, stateless_carry


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class CounterState:
    obs: jax.Array  # [2]: (step t, last action)
    reward: jax.Array
    done: jax.Array
    info: dict  # cost (of the last step), rate (this episode's cost per step)


class CounterEnv:
    """obs = (t, last action); reward = the action applied; done once t reaches `done_at`. Each step costs
    `cost_rate`, or, with `random_rate`, a rate drawn per episode from U(0, 1) at reset."""

    observation_size, action_size, cost_budget = 2, 1, 4.0

    def __init__(self, episode_length: int, done_at: int = 10**6, cost_rate: float = 0.5, random_rate: bool = False):
        self.episode_length, self.done_at = episode_length, done_at
        self.cost_rate, self.random_rate = cost_rate, random_rate

    def reset(self, key):
        zero = jnp.zeros(())
        rate = jax.random.uniform(key) if self.random_rate else jnp.asarray(self.cost_rate, jnp.float32)
        return CounterState(obs=jnp.zeros(2), reward=zero, done=zero, info={"cost": zero, "rate": rate})

    def step(self, state, action):
        t = state.obs[0] + 1.0
        return CounterState(
            obs=jnp.stack([t, action[0]]),
            reward=action[0],
            done=(t >= self.done_at) * 1.0,
            info={"cost": state.info["rate"], "rate": state.info["rate"]},
        )


def make_policy(act, repeat: int = 1, sample=None, init_carry=stateless_carry) -> Policy:
    """A `Policy` of the counter env around `act(carry, obs, key) -> (action [1], carry)`."""
    return Policy(
        act=act,
        init_carry=init_carry,
        params=None,
        apply=None,
        observation_size=2,
        action_size=1,
        env_name="counter",
        env_config=None,
        cost_budget=4.0,
        algo="test",
        sample=sample,
        action_repeat=repeat,
    )


def step_index_policy(repeat: int = 1, sample=None) -> Policy:
    """Acts with the decision's step index t / 100, so a held action shows up as a repeated value."""
    return make_policy(stateless(lambda obs, key: obs[:1] / 100.0), repeat, sample)


def cost_spent_policy(repeat: int = 1) -> Policy:
    """Acts with the cost spent so far in the episode (what its carry says), so feedback is visible."""
    return make_policy(lambda carry, obs, key: (carry.cost_spent[None], carry), repeat)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SuccessState(CounterState):
    metrics: dict  # success: 1.0 while the last action applied exceeds the env's threshold


class SuccessCounterEnv(CounterEnv):
    """The counter env with `metrics["success"]` = 1 where the action just applied is ≥ `threshold`."""

    def __init__(self, episode_length: int, threshold: float, **kwargs):
        super().__init__(episode_length, **kwargs)
        self.threshold = threshold

    def _with_success(self, state: CounterState) -> SuccessState:
        success = (state.obs[1] >= self.threshold) * 1.0
        return SuccessState(**dataclasses.asdict(state), metrics={"success": success})

    def reset(self, key):
        return self._with_success(super().reset(key))

    def step(self, state, action):
        return self._with_success(super().step(state, action))
