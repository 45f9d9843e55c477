"""soft_arm's tasks: rewards of a transition (obs, action, next_obs) that read only the tip position
`obs[..., 0:3]` (m) and tip velocity `obs[..., 3:6]` (m/s) of the documented layout (leading axes broadcast).

Fixed targets are points where the arm settles under a constant action (`SoftArm.equilibrium_tip`, native
MuJoCo on the env's nominal model), so each is reachable and holdable by construction.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jp
import numpy as np

from envs.base import RenderMarker
from envs.tasks import Task

TIP_POS, TIP_VEL = slice(0, 3), slice(3, 6)
REACH_SCALE = 0.1  # m: reach reward 1 − tanh(d / 0.1): 0.54 at 6 cm, 0.24 at 10 cm
HOLD_SCALE = 0.03  # m: hold_pose position factor 1 − tanh(d / 0.03)
HOLD_SPEED = 0.05  # m/s: hold_pose speed factor exp(−|v| / 0.05)
CIRCLE_WIDTH = 0.03  # m: circle on-track factor exp(−(Δr² + Δz²) / (2 · 0.03²))
CIRCLE_SPEED = 0.1  # m/s: circle speed factor clip(v_tangential / 0.1, 0, 1) (one lap in ≈ 7 s at r = 0.11 m)
# (bending direction (rad from +x), moment as a fraction of one cable's max tension) of the constant actions
# whose equilibria define the targets (`SoftArm.bending_action`)
REACH_BEND = (math.pi / 4, 0.5)  # out toward +x +y
# far out toward −x +y: 0.22 m off the axis, where uniformly random tensions (which mostly cancel) rarely take the tip
REACH_FAR_BEND = (3 * math.pi / 4, 0.8)
HOLD_BEND = (math.pi, 0.5)  # out toward −x
CIRCLE_BEND = (0.0, 0.4)  # the circle's radius and height
TARGET_RGBA = (0.1, 0.8, 0.2, 0.8)  # drawn targets (as the env's episode target)
PATH_RGBA = (0.1, 0.6, 0.9, 0.7)  # drawn circle
CIRCLE_MARKERS = 24  # spheres drawn along the circle


def target_marker(target: np.ndarray, radius: float = 0.012) -> RenderMarker:
    """A green sphere of `radius` (m) at `target` [3] (m): a task's target, or the env's episode target."""
    x, y, z = (float(v) for v in target)
    return RenderMarker("sphere", (radius, 0.0, 0.0), (x, y, z), TARGET_RGBA)


def _tip(obs):
    return obs[..., TIP_POS]


def reach_task(target: np.ndarray | jax.Array, name: str = "reach") -> Task:
    target = jp.asarray(target, jp.float32)

    def reward(obs, action, next_obs):
        return 1.0 - jp.tanh(jp.linalg.norm(_tip(next_obs) - target, axis=-1) / REACH_SCALE)

    x, y, z = (float(v) for v in target)
    return Task(
        name,
        f"tip to the fixed point ({x:.3f}, {y:.3f}, {z:.3f}) m: 1 − tanh(distance / "
        f"{REACH_SCALE} m) per step, in [0, 1]",
        reward,
        (target_marker(np.asarray(target)),),
    )


def hold_pose_task(target: np.ndarray | jax.Array) -> Task:
    target = jp.asarray(target, jp.float32)

    def reward(obs, action, next_obs):
        distance = jp.linalg.norm(_tip(next_obs) - target, axis=-1)
        speed = jp.linalg.norm(next_obs[..., TIP_VEL], axis=-1)
        return (1.0 - jp.tanh(distance / HOLD_SCALE)) * jp.exp(-speed / HOLD_SPEED)

    x, y, z = (float(v) for v in target)
    return Task(
        "hold_pose",
        f"hold the tip still at ({x:.3f}, {y:.3f}, {z:.3f}) m, e.g. under the "
        f"'tip_payload' shift (a 45 g load): (1 − tanh(distance / {HOLD_SCALE} m)) · "
        f"exp(−tip speed / {HOLD_SPEED} m/s) per step, in [0, 1]",
        reward,
        (target_marker(np.asarray(target), HOLD_SCALE / 3),),
    )


def circle_task(radius: float, height: float) -> Task:
    def reward(obs, action, next_obs):
        tip, velocity = _tip(next_obs), next_obs[..., TIP_VEL]
        radial = jp.linalg.norm(tip[..., :2], axis=-1)
        # counter-clockwise (seen from above) unit tangent at the tip's azimuth; defined as 0 on the axis
        tangent = jp.stack([-tip[..., 1], tip[..., 0]], -1) / jp.maximum(radial, 1e-6)[..., None]
        tangential_speed = (velocity[..., :2] * tangent).sum(-1)
        off_track = (radial - radius) ** 2 + (tip[..., 2] - height) ** 2
        return jp.clip(tangential_speed / CIRCLE_SPEED, 0.0, 1.0) * jp.exp(-off_track / (2 * CIRCLE_WIDTH**2))

    return Task(
        "circle",
        f"tip around the horizontal circle of radius {radius:.3f} m at z = {height:.3f} m "
        f"about the arm's axis, counter-clockwise seen from above: clip(tangential speed / "
        f"{CIRCLE_SPEED} m/s, 0, 1) · exp(−(Δradius² + Δheight²) / (2 · {CIRCLE_WIDTH} m)²) per step, "
        "in [0, 1]",
        reward,
        tuple(
            RenderMarker("sphere", (0.004, 0.0, 0.0), (radius * math.cos(a), radius * math.sin(a), height), PATH_RGBA)
            for a in np.linspace(0, 2 * math.pi, CIRCLE_MARKERS, endpoint=False)
        ),
    )


def make_tasks(env) -> dict[str, Task]:
    """{"reach", "reach_far", "circle", "hold_pose"} of a `SoftArm` (targets from its nominal model's equilibria)."""

    def settled(bend):
        return env.equilibrium_tip(env.bending_action(*bend))

    circle_point = settled(CIRCLE_BEND)
    tasks = [
        reach_task(settled(REACH_BEND)),
        reach_task(settled(REACH_FAR_BEND), "reach_far"),
        circle_task(float(np.linalg.norm(circle_point[:2])), float(circle_point[2])),
        hold_pose_task(settled(HOLD_BEND)),
    ]
    return {task.name: task for task in tasks}
