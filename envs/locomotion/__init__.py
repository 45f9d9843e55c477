"""Locomotion with a safety cost: a planar walker (dm_control's WalkerWalk) with RWRL's joint-angle constraint."""

from envs.locomotion.walker import Walker

__all__ = ["Walker"]
