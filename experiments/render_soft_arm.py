"""Render a scripted soft_arm rollout to a GIF (docs/media/soft_arm.gif): the bending direction turns once
around the arm while the tension swells, so the tip sweeps a widening loop past the forbidden sphere (red);
the green dot is the episode's target. Stepped on the native twin (no MJX compile), drawn by envs/render.py.

    python experiments/render_soft_arm.py [--out docs/media/soft_arm.gif] [--material stiffening]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import envs
from envs.native import NativeTwin
from envs.render import render_frames, write_video


def scripted_qpos(env, steps: int, seed: int) -> tuple[np.ndarray, dict]:
    """qpos [steps, nq] of the scripted rollout and the episode info (for the markers)."""
    twin = NativeTwin(env, seed=seed)
    twin.reset()
    qpos = []
    for t in range(steps):
        phase = t / steps
        direction = 2 * math.pi * phase
        tension = 0.2 + 0.6 * math.sin(math.pi * phase)  # 20 % → 80 % → 20 % of the maximum
        twin.step(env.bending_action(direction, tension))
        qpos.append(twin.mj_data.qpos.copy())
    return np.array(qpos), twin.info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/media/soft_arm.gif")
    parser.add_argument("--material", default="linear", choices=["linear", "stiffening", "hysteretic"])
    parser.add_argument("--steps", type=int, default=150, help="env steps (0.04 s each)")
    parser.add_argument("--every", type=int, default=2, help="render every n-th step")
    parser.add_argument("--size", type=int, nargs=2, default=(200, 260), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = envs.make("soft_arm", material=args.material)
    qpos, info = scripted_qpos(env, args.steps, args.seed)
    frames = render_frames(env, qpos[:: args.every], height=args.size[0], width=args.size[1], camera="side",
                           info=info)
    written = write_video(frames, args.out, fps=1.0 / (env.dt * args.every))
    print(f"written: {written} ({written.stat().st_size / 1024:.0f} KiB, {len(frames)} frames)")


if __name__ == "__main__":
    main()
