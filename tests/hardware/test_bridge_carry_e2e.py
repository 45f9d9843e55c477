"""Deployed and evaluated policies behave the same: a policy whose actions depend on its carry (the cost
spent, a decision counter) is run on the simulated safe cart-pole robot through `saferl-deploy`'s driver,
then the recorded observations and costs are replayed through saferl's episode loop (`lax.scan`): the
same actions come out, decision by decision, held for `action_repeat` steps, carry reset per episode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bridge_helpers import start_server, stop_server

from hardware import cli
from hardware.recording import episode_files, load_episode
from hardware.runner import RunConfig
from saferl.policies import Policy, PolicyCarry, episode

STEPS, REPEAT = 40, 2


def carry_policy() -> Policy:
    """Pushes the cart out of the cost band, then back as cost accumulates; a counter in its memory."""
    weights = jnp.linspace(-0.5, 0.5, 5)

    def act(carry, obs, key):
        push = 0.9 - 0.25 * carry.cost_spent + 0.05 * jnp.tanh(obs @ weights) + 0.01 * carry.memory
        return jnp.clip(push, -1.0, 1.0)[None], carry.replace(memory=carry.memory + 1)

    init = lambda: PolicyCarry(cost_spent=jnp.zeros(()), memory=jnp.zeros((), jnp.float32))  # noqa: E731
    return Policy(
        act=act,
        init_carry=init,
        params=None,
        apply=None,
        observation_size=5,
        action_size=1,
        env_name="safe_cartpole",
        env_config=None,
        cost_budget=100.0,
        algo="test",
        action_repeat=REPEAT,
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class ReplayState:
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict  # cost (of the last step), t (steps taken)


class ReplayEnv:
    """Replays a recorded episode's observations, rewards and costs, whatever the actions."""

    def __init__(self, recorded: dict[str, np.ndarray], length: int):
        self.recorded = {k: jnp.asarray(recorded[k][:length]) for k in ("obs", "next_obs", "reward", "cost")}
        self.length = length

    def reset(self, key):
        zero = jnp.zeros(())
        return ReplayState(
            obs=self.recorded["obs"][0], reward=zero, done=zero, info={"cost": zero, "t": jnp.zeros((), jnp.int32)}
        )

    def step(self, state, action):
        t = jnp.minimum(state.info["t"], self.length - 1)
        return ReplayState(
            obs=self.recorded["next_obs"][t],
            reward=self.recorded["reward"][t],
            done=jnp.zeros(()),
            info={"cost": self.recorded["cost"][t], "t": state.info["t"] + 1},
        )


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    # 100 Hz is 2x real time for the cart-pole (ctrl_dt 0.02 s)
    proc, address = start_server(["-m", "hardware.cli", "sim", "safe_cartpole", "--rate", "100", "--watchdog", "10"])
    try:
        record_dir = tmp_path_factory.mktemp("carry_rec")
        config = RunConfig(episodes=2, seed=3, max_steps=STEPS, record_dir=str(record_dir))
        summaries = cli.drive(carry_policy(), address, config, live=False)
    finally:
        stop_server(proc)
    return record_dir, summaries


def _chained_prefix(recorded: dict[str, np.ndarray]) -> int:
    """Transitions from step 0 up to the first state the policy side missed (where carries could differ)."""
    chained = np.concatenate([[True], np.diff(recorded["seq"]) == 1])
    return int(np.argmin(chained)) if not chained.all() else chained.size


@pytest.mark.slow
def test_a_deployed_carry_dependent_policy_acts_as_the_episode_loop_on_the_same_observations(recording):
    record_dir, summaries = recording
    assert [s.steps for s in summaries] == [STEPS, STEPS] and all(s.fault == "" for s in summaries)
    policy = carry_policy()
    for path in episode_files(record_dir):  # the second episode checks the carry was reset
        recorded = load_episode(path)
        length = _chained_prefix(recorded)
        assert length >= 20, length  # most states seen even when other jobs load the machine
        assert recorded["cost"][:length].sum() >= 3  # the carry really changed: actions reacted to cost
        env = ReplayEnv(recorded, length)
        _, decisions = jax.jit(
            lambda env=env, length=length: episode.run(
                policy,
                env,
                env.reset(None),
                jax.random.PRNGKey(0),
                episode.decisions_for(length, REPEAT),
                emit_step=lambda step: step.action,
            )
        )()
        loop_actions = np.asarray(episode.per_step(decisions.steps, length))
        fresh = recorded["source"][:length] == 0  # applied as the policy side sent it (not a watchdog hold)
        assert fresh.mean() > 0.5
        # same float32 ops on the same float32 inputs: equal up to XLA fusion differences
        np.testing.assert_allclose(recorded["action"][:length][fresh], loop_actions[fresh], atol=1e-6)
        held = np.abs(np.diff(loop_actions[:, 0]))[0::2]  # steps 0→1, 2→3, …: within a hold
        assert held.max() == 0.0
