# %% [markdown]
# # 07 — Hardware: loopback deployment over the bridge
#
# The ROS-free ZeroMQ bridge (`hardware/`): a robot-side server runs the control loop (numpy + pyzmq only, no
# JAX) and publishes states; the policy client answers each with an action, and a watchdog latches the safe
# action when answers stop. Here the robot is simulated (`saferl-deploy sim pendulum`, native MuJoCo in its own
# process) and the client runs a policy through `saferl-deploy run RUN --robot ADDRESS`'s loop,
# on loopback. Then the committed latency benchmark `experiments/benchmarks/bridge_latency.py`.
#
# Budget: `small` deploys a hand-written controller for 2 episodes of 100 steps at 100 Hz (5× real time); `full`
# trains SAC for 20 000 steps and deploys it for 3 whole episodes (200 steps) at 100 Hz.

# %%
import pathlib
import sys

ROOT = next(p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "pyproject.toml").is_file())
sys.path.insert(0, str(ROOT / "experiments" / "notebooks"))
import nbhelpers as nb

BUDGET = nb.setup()

# %% [markdown]
# ## A policy to deploy
# `small`: a hand-written energy-pumping controller (torque along the pole's motion, obs [cos θ, sin θ, θ̇])
# wrapped in the `saferl.policies.Policy` interface every trained policy has. `full`: `saferl train sac`
# through the library (`saferl.training.run.train`) into a temporary directory, loaded from its run directory
# as `saferl-deploy run` does (any run directory works the same, MPC planners such as PETS too).

# %%
import tempfile

import jax.numpy as jnp

from hardware.policies import load_policy
from saferl.policies import Policy, stateless, stateless_carry
from saferl.training.run import train

OUT = pathlib.Path(tempfile.mkdtemp(prefix="saferl-notebook-hardware-"))
if BUDGET == "small":
    EPISODES, MAX_STEPS = 2, 100

    def pump(params, obs):
        """Torque in [-1, 1] along the angular velocity: obs [..., 3] -> action [..., 1]."""
        return jnp.tanh(params["gain"] * obs[..., 2:3])

    PARAMS = {"gain": jnp.float32(2.0)}
    policy = Policy(
        act=stateless(lambda obs, key: pump(PARAMS, obs)),
        init_carry=stateless_carry,
        params=PARAMS,
        apply=pump,
        observation_size=3,
        action_size=1,
        env_name="pendulum",
        env_config=None,
        cost_budget=0.0,
        algo="energy-pump",
    )
else:
    EPISODES, MAX_STEPS = 3, None
    with nb.Stopwatch("saferl train sac --env pendulum --steps 20000 (compile + run)"):
        run = train(
            "sac",
            "pendulum",
            steps=20_000,
            seed=0,
            overrides={"num_envs": 4},
            out=OUT,
            progress=False,
            tensorboard=False,
        )
    policy = load_policy(run.run_dir)
print(f"policy: {policy.algo} for {policy.env_name} (obs {policy.observation_size}, action {policy.action_size})")

# %% [markdown]
# ## The robot: `saferl-deploy sim pendulum`
# Its own process, bound to three free loopback ports (control PORT, states PORT+1, actions PORT+2); it prints
# `ready` once its simulator is compiled. 100 Hz is 5× pendulum's real time (ctrl_dt 50 ms).

# %%
import re
import subprocess
import time

from hardware.endpoints import free_loopback_address

ADDRESS = free_loopback_address()  # tcp://127.0.0.1:PORT with PORT..PORT+2 free
start = time.perf_counter()
robot = subprocess.Popen(
    [sys.executable, "-m", "hardware.cli", "sim", "pendulum", "--bind", ADDRESS, "--rate", "100", "--watchdog", "10"],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=ROOT,
)
lines = []
while (line := robot.stdout.readline()) and line.strip() != "ready":
    lines.append(line)
if robot.poll() is not None:
    raise RuntimeError("the simulated robot did not start:\n" + "".join(lines))
banner = re.sub(r"\x1b\[[0-9;]*m", "", "".join(lines)).strip()  # without the terminal colours
print(f"robot serving on {ADDRESS} after {time.perf_counter() - start:.1f} s: {banner}")

# %% [markdown]
# ## Deploy: `saferl-deploy run`'s loop
# `hardware.runner.run_episodes`: warm-up (compiling the policy's decision step), then per episode reset,
# start, answer every state, stop; transitions are recorded as training data (`saferl train --data DIR`).

# %%
from hardware.client import RobotClient
from hardware.runner import RunConfig, run_episodes

compute_ms = []
config = RunConfig(episodes=EPISODES, seed=0, max_steps=MAX_STEPS, record_dir=str(OUT / "deploy"))
with RobotClient(ADDRESS) as client:
    start = time.perf_counter()
    summaries = run_episodes(
        client, policy, config, {"notebook": "07_hardware"}, progress=lambda p: compute_ms.append(p["compute_ms"])
    )
    wall = time.perf_counter() - start
    status = client.status()
nb.table(
    ["episode", "steps", "return", "cost", "gaps", "fault", "action sources", "policy ms p50", "policy ms max"],
    [
        [
            s.episode,
            s.steps,
            s.episode_return,
            s.cost,
            s.gaps,
            s.fault or "-",
            s.sources,
            s.compute_ms_p50,
            s.compute_ms_max,
        ]
        for s in summaries
    ],
)
print(
    f"{sum(s.steps for s in summaries)} robot steps in {wall:.1f} s (warm-up compile included); recorded to "
    f"{config.record_dir}"
)

# %% [markdown]
# ## Latency
# Policy side: state received → action sent (decode, the compiled decision, encode, send), every step.
# Robot side: the server's round trip, state published → the action answering it received (its own clock),
# as percentiles over its window.

# %%
import matplotlib.pyplot as plt
import numpy as np

round_trip = status["latency"]
fig, axis = plt.subplots(figsize=(6, 3.4))
axis.hist(np.asarray(compute_ms) * 1e3, bins=40, color="tab:blue", alpha=0.8, label="policy side (per step)")
for name, style in (("p50_us", "-"), ("p99_us", "--")):
    if name in round_trip:
        axis.axvline(round_trip[name], color="tab:red", ls=style, label=f"robot round trip {name[:3]}")
axis.set_xlabel("µs")
axis.set_ylabel("steps")
axis.set_title(f"loopback bridge, {policy.algo} policy on pendulum-sim at 100 Hz")
axis.legend(fontsize=8)
nb.show(fig)
print(
    f"policy side p50 {np.median(compute_ms) * 1e3:.0f} µs, p99 {np.percentile(compute_ms, 99) * 1e3:.0f} µs; "
    f"robot round trip: {round_trip}; overruns {status['overruns']}, dropped {status['dropped']}"
)
robot.terminate()
print("robot process exit code:", robot.wait(timeout=10))

# %% [markdown]
# ## Committed: bridge latency at 100 Hz, 500 Hz and 1 kHz
# `experiments/benchmarks/bridge_latency.py`: a point-mass robot served in its own process, a jitted MLP
# answering; remote (network round trip) against on-board ONNX inference, with the bare pyzmq + msgpack
# round trip as the floor.

# %%
bridge = nb.load_json(nb.BENCHMARK_RESULTS / "bridge_latency.json", "python experiments/benchmarks/bridge_latency.py")
if bridge:
    print(f"bridge_latency: {bridge['robot']}; policy {bridge['policy']}; {bridge['seconds_per_rate']} s per rate")
    rows = []
    for result in bridge["results"]:
        for mode in ("remote", "remote_busy_wait", "onboard"):
            if mode in result:
                r = result[mode]
                latency = r.get("latency_us") or {}
                rows.append(
                    [
                        result["rate_hz"],
                        mode,
                        latency.get("p50_us", "-"),
                        latency.get("p99_us", "-"),
                        r["fresh_fraction"],
                        r["overruns"],
                        r.get("policy_inference_us_p50") or "-",
                    ]
                )
    nb.table(["rate Hz", "mode", "round trip p50 µs", "p99 µs", "fresh actions", "overruns", "inference µs p50"], rows)
    bare = bridge["reference_bare_pyzmq_msgpack_500hz"]
    print(
        f"bare pyzmq + msgpack round trip at {bare['rate_hz']} Hz: p50 {bare['p50_us']:.0f} µs, "
        f"p99 {bare['p99_us']:.0f} µs"
    )
    nb.image(nb.BENCHMARK_RESULTS / "bridge_latency.png")
