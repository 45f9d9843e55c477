"""End to end on loopback: `saferl-deploy sim safe_cartpole --onboard DIR` runs an exported shielded SOOPER policy
(a stand-in learner behind the tiny prior's shield) in its own process; the client starts the episode on board
and drops the link mid-episode. The robot keeps the shielded policy and its cost bookkeeping: every state of the
episode, replayed through the same export here, gives the actions it applied and the shield counters it reports.
"""

import pathlib
import sys
import time

import numpy as np
import pytest
import zmq
from bridge_helpers import start_server, stop_server

from hardware import endpoints, protocol
from hardware.client import RobotClient
from hardware.robot.onboard_shield import OnboardShieldedPolicy

DROP_AT, RECONNECT_AT = 40, 120  # steps at which the link drops and a new client connects (100 Hz: 0.4 s, 1.2 s)
# the export's budget: the tiny prior's critic (40-step episodes in a narrow band) asks scale·Q_c ≈ 14 at the
# start; the sim's band is wider, but its 1000-step episodes cost ≈ 1 per step once the cart has left it: the
# learner acts first, the shield fires once ≈ 16 is spent, within the ~120 steps of the test
BUDGET = 30.0


@pytest.fixture(scope="module")
def shielded_export(tmp_path_factory):
    """A budget-rule export: the tiny SOOPER prior and a learner (its actor with perturbed weights), scaled for the
    prior's 40-step episodes."""
    import jax

    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "training"))
    from tiny_runs import sooper_prior_run

    from saferl.agents.sooper.prior import load_prior
    from saferl.agents.sooper.shield import shield_scale
    from saferl.export.shielded import ShieldConstants, export_shielded_onnx

    prior, template = load_prior(sooper_prior_run().run_dir)
    leaves, treedef = jax.tree.flatten(prior.policy_params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    learner_params = jax.tree.unflatten(
        treedef, [x + 0.5 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )
    length = template.env_config.episode_length
    constants = ShieldConstants("budget", BUDGET, shield_scale(length, prior.cost_discounting), episode_length=length)
    out = tmp_path_factory.mktemp("shielded")
    apply = lambda params, obs: prior.replace(policy_params=params).action(obs)  # noqa: E731
    sizes = (template.observation_size, template.action_size)
    export_shielded_onnx(out, apply, learner_params, prior, constants, *sizes, info={"algo": "sooper (stand-in)"})
    return out


@pytest.fixture(scope="module")
def shielded_sim(shielded_export):
    # 100 Hz is 2x real time for safe_cartpole (ctrl_dt 0.02 s)
    proc, address = start_server(
        ["-m", "hardware.cli", "sim", "safe_cartpole", "--rate", "100", "--onboard", str(shielded_export)]
    )
    yield address
    assert proc.poll() is None
    stop_server(proc)


class StateListener:
    """Every state the robot publishes (no CONFLATE), read on demand: a passive observer, not the client."""

    def __init__(self, address: str, state_port: int):
        self.context = zmq.Context()
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(f"tcp://{endpoints.parse(address)[0]}:{state_port}")
        self.states: list[protocol.Message] = []

    def until(self, predicate, timeout_s: float = 10.0) -> protocol.Message:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sub.poll(100):
                state = protocol.decode(self.sub.recv(), expected=("state",))
                self.states.append(state)
                if predicate(state.body):
                    return state
        raise AssertionError(
            f"no such state within {timeout_s} s; last: {self.states[-1].body if self.states else None}"
        )

    def close(self) -> None:
        self.sub.close(linger=0)
        self.context.term()


@pytest.mark.slow
def test_the_robot_keeps_the_shielded_policy_and_its_cost_spent_when_the_link_drops(shielded_sim, shielded_export):
    client = RobotClient(shielded_sim)
    assert client.info["onboard"] is True
    listener = StateListener(shielded_sim, client.info["state_port"])
    try:
        time.sleep(0.2)  # the subscription reaches the robot before the episode starts
        reset_obs = client.reset(seed=4)
        episode = client.status()["episode"]
        assert client.status()["shield"] == {
            "rule": "budget",
            "budget": BUDGET,
            "cost_spent": 0.0,
            "decisions": 0,
            "interventions": 0,
        }
        client.start(mode="onboard")
        listener.until(lambda s: s["episode"] == episode and s["step"] >= DROP_AT)
        client.close()  # the link drops: the workstation is gone mid-episode
        listener.until(lambda s: s["step"] >= RECONNECT_AT)
        with RobotClient(shielded_sim) as again:
            status = again.status()
            assert status["mode"] == "onboard" and status["fault"] == "" and status["client_disconnects"] >= 1
            assert status["shield"]["decisions"] >= RECONNECT_AT
            steps = again.stop()["step"]
            final = again.status()["shield"]
        listener.until(lambda s: s["mode"] == "idle" and s["step"] == steps)
    finally:
        listener.close()

    # every step of the episode, in order: (obs before it, action applied, cost measured); the robot may start
    # the episode before it publishes a state of step 0: the reset's observation is the first
    first = {0: {"obs": reset_obs}}
    for state in listener.states:
        if state.body["episode"] == episode:
            first.setdefault(state.body["step"], state.body)
    assert sorted(first) == list(range(steps + 1)), "the listener missed states"
    during = [first[k] for k in range(1, steps + 1)]
    assert all(s["mode"] == "onboard" and s["action_source"] == "onboard" and s["fault"] == "" for s in during)

    # the same export fed the robot's observations and costs here decides the same, step by step
    replay = OnboardShieldedPolicy(shielded_export)
    for k in range(1, steps + 1):
        action = replay(first[k - 1]["obs"])
        np.testing.assert_allclose(first[k]["action"], action, atol=1e-6)  # the same graphs, one thread each
        replay.observe_cost(first[k]["cost"])
    costs = np.array([s["cost"] for s in during])
    assert final == replay.shield_status() | {"cost_spent": pytest.approx(costs.sum())}
    assert final["decisions"] == steps
    # the bookkeeping had something to keep, also after the link dropped, and the shield fired on it
    assert costs[DROP_AT:].sum() > 0 and 0 < final["interventions"] < steps, (costs.sum(), final)
