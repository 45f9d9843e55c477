"""Layers that point one way (issue #29): walk every import statement of every module under saferl/ (top-level and
inside functions, so lazy imports count) and fail on an edge from a lower layer to a higher one.

Lowest first; a module may import its own layer and the ones below:
  0 saferl (root), errors, config, registry (algorithm names -> their modules, imported by name at lookup),
    sharding (device meshes), compilation_cache
  1 data (buffers, transitions, observations), constraints (cost-constraint handlers)
  2 models (ensembles)          3 planning (rollouts, objectives, iCEM)
  4 policies (the Policy contract, episode loop, loading through the registry)
  5 training (run directories, checkpoints, loop, logger, distributed, the driver that dispatches through the
    registry)
  6 agents (algorithms: their trainers use the training layer)
  7 export (ONNX)               8 cli
`envs/` (the simulations) imports nothing of saferl, and `hardware/robot/` (the robot side) nothing of saferl, envs
or JAX (the simulated robot, which steps an env, is `hardware/sim_robot.py`, next to the deploy CLI).
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = {
    "saferl": 0,
    "saferl.errors": 0,
    "saferl.config": 0,
    "saferl.registry": 0,
    "saferl.sharding": 0,
    "saferl.compilation_cache": 0,
    "saferl.data": 1,
    "saferl.constraints": 1,
    "saferl.models": 2,
    "saferl.planning": 3,
    "saferl.policies": 4,
    "saferl.training": 5,
    "saferl.agents": 6,
    "saferl.export": 7,
    "saferl.cli": 8,
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; `from pkg import name` counts as pkg.name (a
    submodule or an attribute: its layer is pkg's or the submodule's, whichever is registered)."""
    found = []
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> int | None:
    """The layer of the longest registered prefix of `module` (None outside saferl)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYERS:
            return LAYERS[".".join(parts[:end])]
    return None


def test_every_saferl_module_has_a_layer():
    unplaced = [_module_name(p) for p in (ROOT / "saferl").rglob("*.py") if _layer(_module_name(p)) is None]
    assert unplaced == []
    top = {
        p.name.removesuffix(".py")
        for p in (ROOT / "saferl").iterdir()
        if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())
    } - {"__init__"}
    assert {f"saferl.{name}" for name in top} <= set(LAYERS), "a new package needs its place in LAYERS"


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted((ROOT / "saferl").rglob("*.py")):
        own = _layer(_module_name(path))
        for line, target in _imports(path):
            layer = _layer(target)
            if layer is not None and layer > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} (layer {layer} > {own})")
    assert upward == [], "\n".join(upward)


def _offending(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{p.relative_to(ROOT)}:{line} imports {target}"
        for p in sorted((ROOT / folder).rglob("*.py"))
        for line, target in _imports(p)
        if target.split(".")[0] in forbidden
    ]


def test_envs_import_no_saferl():
    assert _offending("envs", ("saferl",)) == []


def test_the_robot_side_imports_neither_saferl_nor_envs_nor_jax():
    assert _offending("hardware/robot", ("saferl", "envs", "jax")) == []


def test_an_upward_import_is_found():
    """The check itself: a module of layer 2 that imports the training layer is reported."""
    assert _layer("saferl.training.loop") > _layer("saferl.models.ensemble")
    assert _layer("saferl.planning.rollout") == 3 and _layer("numpy") is None
