"""Soft-robot envs: a tendon-driven continuum arm (`soft_arm`), a flexible fish (`soft_fish`), a muscle leg
(`muscle_leg`)."""
