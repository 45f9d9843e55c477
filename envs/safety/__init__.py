"""Safety-constrained tasks: a swing-up with a cart-position constraint, a point robot among hazards and an RC car
past an obstacle. `race_car` registers itself here (`envs/__init__.py` registers the others)."""

from envs.registry import register
from envs.safety.race_car import RaceCar

register("race_car", RaceCar)
