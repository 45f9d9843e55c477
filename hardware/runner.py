"""Policy side of a deployment: run episodes of a (jitted) policy against a robot server and record them.

The policy is compiled and warmed up before the first real step. `Actor` executes it exactly as saferl's
episode loop (`saferl.policies.episode`) does in collection and `saferl eval`, one robot step at a time:
a fresh policy carry per episode, the cost of every received state fed back into it, one decision (the
loop's shared `decide`) held for `policy.action_repeat` steps. Episode cost is tracked against the budget;
every transition is recorded (hardware.recording).
"""

from __future__ import annotations

import dataclasses
import gc
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.client import RobotClient, RobotConnectionError
from hardware.recording import EpisodeRecorder, write_metadata
from saferl.errors import UserError


@dataclasses.dataclass(frozen=True)
class RunConfig:
    episodes: int = 1  # episodes to run
    seed: int = 0  # episode i resets the robot with seed + i (simulators honour it)
    max_steps: int | None = None  # steps per episode (None: until the robot reports done)
    validity_s: float = 0.1  # each action expires this long after the state it answers, s
    state_timeout_s: float = 2.0  # no state for this long: the robot is lost, s
    record_dir: str | None = None  # where episode_XXXX.npz + metadata.json go (None: no recording)
    stop_on_budget: bool = False  # stop an episode once its cost exceeds the budget
    busy_wait: bool = False  # wait for states without sleeping (lower latency; keeps one core busy)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not 0 < self.validity_s <= 10:
            raise ValueError(f"validity_s must be in (0, 10], got {self.validity_s}")


@dataclasses.dataclass
class EpisodeSummary:
    episode: int
    seed: int
    steps: int = 0
    episode_return: float = 0.0
    cost: float = 0.0
    cost_budget: float = 0.0
    gaps: int = 0  # robot steps the policy side did not see
    transitions: int = 0  # (obs, action, next_obs) recorded; steps - gaps - one per run of missed states
    fault: str = ""  # the robot's fault, if one latched
    compute_ms_p50: float = 0.0  # state received -> action sent, policy side, ms
    compute_ms_max: float = 0.0
    sources: dict[str, int] = dataclasses.field(default_factory=dict)
    path: str | None = None

    @property
    def over_budget(self) -> bool:
        return self.cost_budget > 0 and self.cost > self.cost_budget


class Actor:
    """Drives a `saferl.policies.Policy` on a robot, one received state at a time, with the episode loop's
    decision step: `actor(obs [obs_dim], step, cost) -> action [act_dim]`.

    `reset(seed)` starts an episode: `policy.init_carry()`, episode key PRNGKey(seed) (decision i plans with
    fold_in(key, i), as in the loop). Each call first feeds `cost` (the cost of the robot step that reached
    `step`) into the carry when `step` is new, then answers: a fresh decision every `policy.action_repeat`
    robot steps, the held action in between. A missed state re-plans at the next one received (its step's
    cost never reached the policy side and is not counted).
    """

    def __init__(self, policy: Any, seed: int = 0, deterministic: bool = True):
        import jax

        from saferl.policies import episode, observe_cost

        self.policy, self.repeat = policy, int(policy.action_repeat)
        act = episode.acting(policy, deterministic)
        self._observe = jax.jit(observe_cost)

        def decide(carry, feed, cost, obs, key, index):
            """Feed `cost` back into the carry when `feed`, then decide: one compiled call per decision."""
            carry = jax.lax.cond(feed, lambda c: observe_cost(c, cost), lambda c: c, carry)
            return episode.decide(act, carry, obs, key, index)

        self._decide = jax.jit(decide)
        self._episode_key = jax.random.PRNGKey
        self.reset(seed)

    def reset(self, seed: int = 0) -> None:
        """Start an episode: a fresh carry, no held action, the episode key of `seed`."""
        self.carry = self.policy.init_carry()
        self._key = self._episode_key(seed)
        self.decisions = 0  # decisions taken this episode
        self._held: np.ndarray | None = None
        self._held_step = 0
        self._last_step: int | None = None

    def _advance(self, step: int) -> bool:
        """Note that the robot reached `step`; True when its cost is new and must be fed back (not for the
        episode's first state, where no step has been taken yet, nor for a step already seen)."""
        if self._last_step is None:
            self._last_step = step
            return False
        if step > self._last_step:
            self._last_step = step
            return True
        return False

    def observe(self, step: int, cost: float) -> None:
        """Feed back the cost of the robot step that reached `step` (ignored for a step already seen)."""
        if self._advance(step):
            self.carry = self._observe(self.carry, np.float32(cost))

    def __call__(self, obs: np.ndarray, step: int, cost: float = 0.0) -> np.ndarray:
        if self._held is not None and 0 <= step - self._held_step < self.repeat:
            self.observe(step, cost)
            return self._held
        action, self.carry = self._decide(
            self.carry,
            np.bool_(self._advance(step)),
            np.float32(cost),
            np.asarray(obs, np.float32),
            self._key,
            self.decisions,
        )
        self._held, self._held_step, self.decisions = np.asarray(action), step, self.decisions + 1
        return self._held


def make_actor(policy: Any, seed: int) -> Actor:
    """The `Actor` of `policy` (jitted on first call; see `warm_up`)."""
    return Actor(policy, seed)


def warm_up(actor: Actor, obs_dim: int, calls: int = 3) -> float:
    """Compile and run the actor a few times on zeros (fresh decisions each); returns the seconds it took."""
    start = time.perf_counter()
    for step in range(calls):
        actor.reset(step)
        for robot_step in range(actor.repeat + 1):  # first decision, held steps (cost fed back), next decision
            actor(np.zeros(obs_dim, np.float32), robot_step, float(robot_step > 0))
    actor.reset()
    gc.collect()
    gc.freeze()  # the policy's objects are never scanned again: no long GC pauses between states
    return time.perf_counter() - start


def check_compatible(policy: Any, client: RobotClient) -> None:
    obs_dim, act_dim = client.spec.obs_shape[0], client.spec.action_shape[0]
    if (policy.observation_size, policy.action_size) != (obs_dim, act_dim):
        raise UserError(
            f"policy ({policy.env_name}: obs {policy.observation_size}, action {policy.action_size}) "
            f"does not fit robot '{client.spec.name}' (obs {obs_dim}, action {act_dim})"
        )


def run_episode(
    client: RobotClient,
    actor: Actor,
    episode_seed: int,
    config: RunConfig,
    budget: float,
    progress: Callable[[dict], None] | None = None,
) -> tuple[EpisodeSummary, EpisodeRecorder]:
    """Reset, start, answer every state with an action until done / max_steps / fault; stop."""
    client.reset(seed=episode_seed)
    actor.reset(episode_seed)
    episode = client.status()["episode"]
    recorder = EpisodeRecorder()
    recorder.observe(client.wait_for_state(episode=episode, step=0))
    client.start()
    state = client.wait_for_state(episode=episode, mode="running", timeout_s=config.state_timeout_s)
    summary = EpisodeSummary(episode=episode, seed=episode_seed, cost_budget=budget)
    compute_ms: list[float] = []
    while True:
        if recorder.observe(state):
            summary.episode_return += state.body["reward"]
            summary.cost += state.body["cost"]
            summary.sources[state.body["action_source"]] = summary.sources.get(state.body["action_source"], 0) + 1
        summary.steps = state.body["step"]
        body = state.body
        if body["done"] or body["mode"] != "running" or (config.max_steps and body["step"] >= config.max_steps):
            break
        if config.stop_on_budget and summary.over_budget:
            break
        received = time.perf_counter()
        client.send_action(actor(body["obs"], body["step"], body["cost"]), state, config.validity_s)
        compute_ms.append((time.perf_counter() - received) * 1e3)
        if progress is not None:
            progress(
                {
                    "episode": episode,
                    "step": body["step"],
                    "return": summary.episode_return,
                    "cost": summary.cost,
                    "budget": budget,
                    "mode": body["mode"],
                    "compute_ms": compute_ms[-1],
                }
            )
        state = _next_state(client, episode, config.state_timeout_s, config.busy_wait)
    summary.fault, summary.gaps, summary.transitions = state.body["fault"], recorder.gaps, len(recorder)
    if state.body["mode"] in ("running", "safe"):
        client.stop()
    if compute_ms:
        summary.compute_ms_p50, summary.compute_ms_max = float(np.median(compute_ms)), float(np.max(compute_ms))
    return summary, recorder


def _next_state(client: RobotClient, episode: int, timeout_s: float, busy_wait: bool = False):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.recv_state(timeout_s=max(deadline - time.monotonic(), 0.0), busy_wait=busy_wait)
        if state is not None and state.body["episode"] == episode:
            return state
    raise RobotConnectionError(f"no state from the robot for {timeout_s} s (robot process lost?)")


def run_episodes(
    client: RobotClient,
    policy: Any,
    config: RunConfig,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[dict], None] | None = None,
) -> list[EpisodeSummary]:
    """Warm up, then run `config.episodes` episodes; records each when `config.record_dir` is set."""
    check_compatible(policy, client)
    actor = make_actor(policy, config.seed)
    compile_s = warm_up(actor, client.spec.obs_shape[0])
    budget = float(getattr(policy, "cost_budget", 0.0) or client.spec.cost_budget)
    summaries: list[EpisodeSummary] = []
    record_dir = pathlib.Path(config.record_dir) if config.record_dir else None
    for index in range(config.episodes):
        summary, recorder = run_episode(client, actor, config.seed + index, config, budget, progress)
        if record_dir is not None:
            summary.path = str(recorder.save(record_dir / f"episode_{index:04d}.npz"))
        summaries.append(summary)
        if record_dir is not None:
            write_metadata(
                record_dir,
                {
                    **(metadata or {}),
                    "robot": client.spec.to_wire(),
                    "robot_address": client.address,
                    "rate_hz": client.rate_hz,
                    "warmup_s": compile_s,
                    "run_config": dataclasses.asdict(config),
                    "episodes": [dataclasses.asdict(s) | {"over_budget": s.over_budget} for s in summaries],
                },
            )
    return summaries
