"""Shared pieces of the model-free agents (PPO, SAC) built from brax's training blocks."""
