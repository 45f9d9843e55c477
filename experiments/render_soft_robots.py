"""Render scripted rollouts of the soft robots to GIFs (docs/media/<env>.gif), stepped on the native twin (no MJX
compile) and drawn by envs/render.py:

  * soft_arm: the bending direction turns once around the arm while the tension swells, so the tip sweeps a
    widening loop past the forbidden sphere (red); the green dot is the episode's target.
  * soft_fish: a 3 Hz tail beat (a bending wave travelling head → tail) swims the fish along its channel (red
    walls), seen from above.
  * muscle_leg: every 0.6 s the vasti, gluteus and soleus fire together for 0.1 s: the leg straightens, lifts the
    pelvis ≈ 5 cm and sinks back into its stance when the muscles relax.

    python experiments/render_soft_robots.py --env soft_fish [--out docs/media/soft_fish.gif]
    python experiments/render_soft_robots.py --env soft_arm --material stiffening
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import envs
from envs.native import NativeTwin
from envs.render import render_frames, write_video
from envs.soft.muscle_leg import MUSCLE_FORCES


def arm_action(env, t: int, steps: int) -> np.ndarray:
    """The bending direction turns once while the tension goes 20 % → 80 % → 20 % of the maximum."""
    phase = t / steps
    return env.bending_action(2 * math.pi * phase, 0.2 + 0.6 * math.sin(math.pi * phase))


def fish_action(env, t: int, steps: int, frequency: float = 3.0, lag: float = 0.8) -> np.ndarray:
    """A tail beat: the body joints' torques follow a sine travelling head → tail (phase lag per joint, rad)."""
    return np.sin(2 * np.pi * frequency * t * env.dt - lag * np.arange(env.action_size)).astype(np.float32)


HOP_MUSCLES = ("vasti", "gluteus", "soleus")  # knee, hip and ankle extensors: push the pelvis up


def leg_action(env, t: int, steps: int, period_s: float = 0.6, burst_s: float = 0.1) -> np.ndarray:
    """All muscles off (−1) and the ankle motor idle, except a burst of the extensors at the start of each period."""
    action = np.array([-1.0] * len(MUSCLE_FORCES) + [0.0], np.float32)
    if (t * env.dt) % period_s < burst_s:
        for name in HOP_MUSCLES:
            action[list(MUSCLE_FORCES).index(name)] = 1.0
    return action


SCRIPTS = {  # env -> (action of step t of `steps`, camera, default steps, default frame size (height, width))
    "soft_arm": (arm_action, "side", 150, (200, 260)),
    "soft_fish": (fish_action, "swim", 150, (150, 300)),
    "muscle_leg": (leg_action, "side", 150, (200, 200)),
}


def scripted_qpos(env, name: str, steps: int, seed: int) -> tuple[np.ndarray, dict]:
    """qpos [steps, nq] of the env's scripted rollout and the episode info (for the markers)."""
    action_of = SCRIPTS[name][0]  # (env, t, steps) -> action [action_size]
    twin = NativeTwin(env, seed=seed)
    twin.reset()
    qpos = []
    for t in range(steps):
        twin.step(action_of(env, t, steps))
        qpos.append(twin.mj_data.qpos.copy())
    return np.array(qpos), twin.info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="soft_arm", choices=sorted(SCRIPTS))
    parser.add_argument("--out", default=None, help="GIF/MP4 to write (default docs/media/<env>.gif)")
    parser.add_argument(
        "--material",
        default=None,
        choices=["linear", "stiffening", "hysteretic"],
        help="soft_arm's material (default linear)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps (0.04 s each for soft_arm, 0.02 s for soft_fish and muscle_leg; default 150)",
    )
    parser.add_argument("--every", type=int, default=2, help="render every n-th step")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("HEIGHT", "WIDTH"),
        help="frame size in pixels (default: 200 260 arm, 150 300 fish, 200 200 leg)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.material is not None and args.env != "soft_arm":
        parser.error("--material applies to soft_arm only")
    env = envs.make(args.env, **({"material": args.material} if args.material else {}))
    _, camera, default_steps, default_size = SCRIPTS[args.env]
    height, width = args.size or default_size
    qpos, info = scripted_qpos(env, args.env, args.steps or default_steps, args.seed)
    frames = render_frames(env, qpos[:: args.every], height=height, width=width, camera=camera, info=info)
    written = write_video(frames, args.out or f"docs/media/{args.env}.gif", fps=1.0 / (env.dt * args.every))
    print(f"written: {written} ({written.stat().st_size / 1024:.0f} KiB, {len(frames)} frames)")


if __name__ == "__main__":
    main()
