"""Agents (algorithms). Each registers an `Algorithm` in `saferl.agents.registry`."""
