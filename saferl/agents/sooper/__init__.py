"""SOOPER ("Safe Exploration via Policy Priors", ICLR 2026): a learner explores behind a shield that falls back
to a safe prior policy wherever the learner's action could break the episode's cost budget. Not registered as
an algorithm yet; this package holds the shield (`shield.py`)."""

from saferl.agents.sooper.shield import (ShieldConfig, ShieldMemory, ShieldTermination, shield_fires,
                                         shield_scale, shielded_action, shielded_policy, terminal_value)

__all__ = ["ShieldConfig", "ShieldMemory", "ShieldTermination", "shield_fires", "shield_scale", "shielded_action",
           "shielded_policy", "terminal_value"]
