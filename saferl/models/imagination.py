"""One imagined step of the learned ensemble: the only place where its predictions become a transition.

The members predict [Δs, r, c] at (s, a): means μ_e, variances σ²_e, e = 1…E. A member choice b (one member per
batch element, or the members' mean) gives s' = s + Δs_b (+ σ_b·ε: aleatoric noise), and with
σ = mean over state dims j of std_e μ_e,Δs_j (the members' spread of the predicted next state):
    r̃ = r_b + λ_opt·σ,        c̃ = max(0, c_b + λ_pess·σ),        hallucinated control: Δs_b,j += β·σ_j·η_j.
Consumers: `saferl.planning.rollout` (PETS, SoftAE), `saferl.models.model_env` (SOOPER's planner, critic, MBPO).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from saferl.models import uncertainty


class ImaginedStep(NamedTuple):
    """One imagined transition (raw units), leading axes [...] of the inputs."""

    next_obs: jax.Array  # [..., obs_dim] s + Δs_b (+ β·σ_j·η_j)
    reward: jax.Array  # [...] r_b + λ_opt·σ
    cost: jax.Array  # [...] max(0, c_b + λ_pess·σ), ≥ 0
    epistemic_std: jax.Array  # [...] σ: std over members of the predicted next state, mean over state dims


def next_state_spread(mean: jax.Array, obs_size: int) -> jax.Array:
    """σ_j: std over members of the predicted next state (of Δs: s is common to them), per state dim j.

    mean [E, ..., obs_size + 2] -> [..., obs_size]; 0 where the members agree, with a finite gradient there."""
    return uncertainty.epistemic_std(mean[..., :obs_size])


def imagine_step(
    obs: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    member: jax.Array | None,
    noise_key: jax.Array | None = None,
    *,
    optimism: float = 0.0,
    pessimism: float = 0.0,
    hallucination_scale: float = 0.0,
    eta: jax.Array | None = None,
) -> ImaginedStep:
    """The transition from obs [..., obs_dim] given the members' predictions mean, var [E, ..., obs_dim + 2].

    member: [...] int in [0, E), the member followed by each element, or None: the members' mean. A caller that
      predicted only the followed member passes it as a one-member stack (E = 1): then σ = 0, so it uses no
      optimism, pessimism or hallucination (`saferl.planning.rollout`'s own-member fast path).
    noise_key: aleatoric noise, the followed member's outputs + σ_b·ε with ε ~ N(0, I) on every output (None: its
      mean; the members' mean is never noised).
    optimism, pessimism: λ_opt, λ_pess ≥ 0 (static; 0 adds nothing). σ is the members' spread of the next state,
      not of the reward or cost heads (SOOPER's σ, Wendl, As et al. ICLR 2026, as in its reference code): how
      well the learned dynamics know (s, a), which is what makes the imagined future uncertain, scores both.
    hallucination_scale, eta: β ≥ 0 and η [..., obs_dim] in [−1, 1]: Δs_j += β·σ_j·η_j (H-UCRL/OPAX).
    """
    if member is None and noise_key is not None:
        raise ValueError("imagine_step: the members' mean (member=None) is followed without aleatoric noise")
    if member is None:
        chosen, chosen_var = mean.mean(axis=0), var.mean(axis=0)
    elif mean.shape[0] == 1:
        chosen, chosen_var = mean[0], var[0]
    else:
        pick = lambda x: jnp.take_along_axis(x, member[None, ..., None], axis=0)[0]  # noqa: E731
        chosen, chosen_var = pick(mean), pick(var)
    if noise_key is not None:
        chosen = chosen + jnp.sqrt(chosen_var) * jax.random.normal(noise_key, chosen.shape, chosen.dtype)
    obs_size = obs.shape[-1]
    delta, reward, cost = chosen[..., :obs_size], chosen[..., obs_size], chosen[..., obs_size + 1]
    spread = next_state_spread(mean, obs_size)  # [..., obs]
    sigma = spread.mean(axis=-1)
    if optimism:
        reward = reward + optimism * sigma
    if pessimism:
        cost = cost + pessimism * sigma
    if hallucination_scale:
        if eta is None:
            raise ValueError("imagine_step: hallucination_scale > 0 needs eta [..., obs_dim]")
        delta = delta + hallucination_scale * spread * eta
    return ImaginedStep(next_obs=obs + delta, reward=reward, cost=jnp.maximum(cost, 0.0), epistemic_std=sigma)
