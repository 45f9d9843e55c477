"""Robotic ultrasound: a procedural body phantom, a JAX B-mode renderer and MJX probe-scanning tasks."""
