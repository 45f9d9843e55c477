"""Agents (algorithms). Each registers an `Algorithm` in `saferl.registry`."""
