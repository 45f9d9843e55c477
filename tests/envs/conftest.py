"""Make `import envs` find the repo's `envs` package, not this test folder: pytest's default import mode puts
`tests/` first on sys.path, where `tests/envs/` (no `__init__.py`) would shadow it as a namespace package
when pytest is started as `.venv/bin/pytest` (`python -m pytest` also puts the repo root first)."""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT in sys.path:
    sys.path.remove(_ROOT)
sys.path.insert(0, _ROOT)
_shadow = sys.modules.get("envs")
if _shadow is not None and getattr(_shadow, "__file__", None) is None:  # an already imported namespace package
    del sys.modules["envs"]
