"""What every benchmark notebook does first and often: read the budget flag, configure JAX (CPU, float32, the
project's persistent compilation cache at `.jax_cache`), time compilation apart from running, load committed
results files (a printed note, never an error, when one is missing) and show tables and figures.

    import nbhelpers as nb
    BUDGET = nb.setup()                      # "small" (tests, quick look) or "full" (`make notebooks`)
    compile_s, run_s, out, compiled = nb.compile_and_run(fn, *args)
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

BUDGETS = ("small", "full")  # SAFERL_NOTEBOOK_BUDGET values
ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository
BENCHMARK_RESULTS = ROOT / "experiments" / "benchmarks" / "results"
EXPERIMENT_RESULTS = ROOT / "experiments" / "results"


def budget() -> str:
    """The budget of this run from SAFERL_NOTEBOOK_BUDGET (default "small"); ValueError naming the allowed ones."""
    value = os.environ.get("SAFERL_NOTEBOOK_BUDGET", "small").strip() or "small"
    if value not in BUDGETS:
        raise ValueError(f"SAFERL_NOTEBOOK_BUDGET={value!r} is not a budget; choose one of {', '.join(BUDGETS)}")
    return value


def setup() -> str:
    """Budget, CPU JAX with the persistent compilation cache, quiet XLA logs; returns the budget.

    `envs` is imported before JAX computes anything (it sets XLA_FLAGS for MJX, see envs/__init__.py).
    """
    chosen = budget()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # XLA's C++ log lines (e.g. "Loading XLA:CPU AOT result" for every cached program) are not ours to show
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax

    import envs  # noqa: F401  (before the first JAX computation)
    from saferl.compilation_cache import enable_compilation_cache

    cache = enable_compilation_cache()  # $XDG_CACHE_HOME/saferl/jax unless SAFERL_JAX_CACHE says otherwise
    print(
        f"budget: {chosen} (SAFERL_NOTEBOOK_BUDGET={'|'.join(BUDGETS)}); jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, {os.cpu_count()} CPUs; compilation cache {cache or 'off'}"
    )
    return chosen


def compile_and_run(fn: Callable, *args: Any, repeats: int = 3) -> tuple[float, float, Any, Callable]:
    """(compile s, best run s of `repeats`, output, compiled function) of `jax.jit(fn)(*args)`: tracing and
    compilation (or loading the program from the persistent cache) are timed through `lower(...).compile()`,
    apart from running the compiled program (which takes arguments shaped like `args` only)."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    run_s, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        run_s = min(run_s, time.perf_counter() - start)
    return compile_s, run_s, out, compiled


class Stopwatch:
    """`with Stopwatch("fit") as w: ...` then `w.seconds`; prints the wall time of the block."""

    def __init__(self, label: str):
        self.label, self.seconds = label, float("nan")

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._start
        print(f"{self.label}: {self.seconds:.1f} s wall")


def show(fig: Any) -> None:
    """Display a matplotlib figure as PNG and close it (whatever backend a library chose, e.g. Agg)."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buffer.getvalue(), format="png"))


def load_json(path: pathlib.Path, producer: str) -> dict | None:
    """The JSON at `path`, or None with a printed note naming `producer` (the script that writes it)."""
    path = pathlib.Path(path)
    if not path.is_file():
        print(f"{path.relative_to(ROOT)} not found: run `{producer}` to produce it (skipped)")
        return None
    return json.loads(path.read_text())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Display a markdown table (floats to 3 significant digits)."""
    from IPython.display import Markdown, display

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


def image(path: pathlib.Path) -> None:
    """Display a committed PNG, or print that it is missing."""
    from IPython.display import Image, display

    path = pathlib.Path(path)
    if path.is_file():
        display(Image(filename=str(path)))
    else:
        print(f"{path.relative_to(ROOT)} not found (skipped)")
