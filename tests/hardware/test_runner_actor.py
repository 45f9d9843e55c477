"""`hardware.runner.Actor`: the episode loop's decision step driven one robot state at a time: a fresh
policy carry per episode, each new state's cost fed back, decisions held for `action_repeat` steps."""

import jax
import jax.numpy as jnp
import numpy as np

from hardware.runner import Actor, warm_up
from saferl.policies import Policy, PolicyCarry, episode, stateless, stateless_carry


def _policy(act, repeat: int = 1, init_carry=stateless_carry) -> Policy:
    return Policy(
        act=act,
        init_carry=init_carry,
        params=None,
        apply=None,
        observation_size=1,
        action_size=1,
        env_name="test",
        env_config=None,
        cost_budget=0.0,
        algo="test",
        action_repeat=repeat,
    )


def obs_policy(repeat: int) -> Policy:
    """Acts with its observation, so each decision is visible."""
    return _policy(stateless(lambda obs, key: obs[:1]), repeat)


def cost_policy(repeat: int = 1) -> Policy:
    """Acts with (cost spent, decisions before this one): both halves of its carry."""

    def act(carry, obs, key):
        return (jnp.stack([carry.cost_spent, carry.memory.astype(jnp.float32)]), carry.replace(memory=carry.memory + 1))

    init = lambda: PolicyCarry(cost_spent=jnp.zeros(()), memory=jnp.zeros((), jnp.int32))  # noqa: E731
    return _policy(act, repeat, init)


def test_actor_holds_each_decision_for_action_repeat_steps_and_replans_after_gaps_and_resets():
    actor = Actor(obs_policy(3), seed=0)
    steps = [0, 1, 2, 3, 4, 6, 7, 8, 9]  # robot step 5 was missed
    actions = [float(actor(np.array([step], np.float32), step)[0]) for step in steps]
    assert actions == [0, 0, 0, 3, 3, 6, 6, 6, 9]  # step 6 is 3 after the decision at 3: a fresh decision
    actor.reset(1)  # a new episode starts at step 0 again
    assert float(actor(np.array([42.0], np.float32), 0)[0]) == 42.0


def test_actor_feeds_back_the_cost_of_each_new_state_and_resets_the_carry_per_episode():
    actor = Actor(cost_policy(repeat=2), seed=0)
    obs = np.zeros(1, np.float32)
    # (step, cost of the step that reached it): step 2 is received twice (counted once)
    answers = [actor(obs, step, cost) for step, cost in [(0, 0.0), (1, 0.5), (2, 1.0), (2, 1.0), (3, 0.25)]]
    np.testing.assert_allclose(answers[0], [0.0, 0.0])  # first decision: nothing spent, no decision before
    np.testing.assert_allclose(answers[1], [0.0, 0.0])  # held
    np.testing.assert_allclose(answers[2], [1.5, 1.0])  # second decision: 0.5 + 1.0 spent, one decision before
    np.testing.assert_allclose(answers[4], [1.5, 1.0])  # held
    assert float(actor.carry.cost_spent) == 1.75 and actor.decisions == 2
    actor.reset(5)  # next episode: a fresh carry
    np.testing.assert_allclose(actor(obs, 0, 3.0), [0.0, 0.0])  # the first state's cost is not a step's
    assert actor.decisions == 1


def test_actor_decisions_use_the_episode_loops_keys():
    draw = _policy(stateless(lambda obs, key: jax.random.uniform(key, (1,))))
    actor, seed = Actor(draw, seed=0), 11
    actor.reset(seed)
    carry, obs = draw.init_carry(), np.zeros(1, np.float32)
    for step in range(3):
        expected, carry = episode.decide(draw.act, carry, obs, jax.random.PRNGKey(seed), step)
        np.testing.assert_array_equal(actor(obs, step), expected)


def test_warm_up_leaves_a_fresh_episode():
    actor = Actor(cost_policy(), seed=0)
    assert warm_up(actor, obs_dim=1) > 0
    assert actor.decisions == 0 and float(actor.carry.cost_spent) == 0.0 and int(actor.carry.memory) == 0


def test_recorder_skips_every_transition_that_touches_a_missed_state():
    from hardware.protocol import Message
    from hardware.recording import EpisodeRecorder

    def state(step: int, episode: int = 1) -> Message:
        return Message(
            "state",
            seq=step,
            t_ns=0,
            body={
                "episode": episode,
                "step": step,
                "obs": np.full(2, step, np.float32),
                "action": np.zeros(1, np.float32),
                "reward": 1.0,
                "cost": 0.0,
                "done": False,
                "action_source": "policy",
            },
        )

    recorder = EpisodeRecorder()
    # steps 3 and 6, 7 missed (two runs); step 1 repeated (robot idle)
    observed = [recorder.observe(state(s)) for s in (0, 1, 1, 2, 4, 5, 8, 9)]
    assert observed == [False, True, False, True, False, True, False, True]
    assert recorder.gaps == 3 and len(recorder) == 9 - recorder.gaps - 2
    arrays = recorder.arrays()
    np.testing.assert_array_equal(arrays["obs"][:, 0], [0, 1, 4, 8])
    np.testing.assert_array_equal(arrays["next_obs"][:, 0], [1, 2, 5, 9])
