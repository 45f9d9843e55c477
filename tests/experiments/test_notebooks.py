"""The notebooks in experiments/notebooks/ run top to bottom in a fresh kernel (nbclient) with the small budget
(SAFERL_NOTEBOOK_BUDGET=small), raise nothing and show what they are for; the committed .ipynb files are what
experiments/notebooks/build.py makes of their percent-format sources (they cannot drift)."""

import json
import pathlib
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "experiments" / "notebooks"
# the committed SOOPER table the notebook reads: its run count, not a number copied here that the next re-run changes
SOOPER_TABLE_RUNS = len(json.loads((ROOT / "experiments" / "results" / "sooper_table.json").read_text())["runs"])
sys.path.insert(0, str(NOTEBOOKS))

import build  # noqa: E402  (experiments/notebooks/build.py)
import nbhelpers  # noqa: E402

# what each notebook must show with the small budget: text in its outputs and a least number of figures
EXPECTED = {
    "01_environments": (
        [
            "| soft_arm | soft robot |",
            "| soft_fish | soft robot |",
            "| muscle_leg | soft robot |",
            "swing_up: (cos θ' + 1) / 2",
            "rendered ",
            "env_throughput: jax",
            "env steps/s",
        ],
        1,
    ),
    "02_models": (
        ["first fit (compile + run)", "second fit (run only)", "| inside the data |", "| outside the data |"],
        2,
    ),
    "03_pets": (
        [
            "saferl train pets --env pendulum",
            "run directory:",
            "compile ≈",
            "pets_vs_modelfree:",
            "pets_time_to_solve:",
            "models_planning:",
        ],
        4,
    ),
    "04_sooper": (
        [
            f"sooper_table: {SOOPER_TABLE_RUNS} runs",
            "| safe_cartpole | sooper |",
            "live SOOPER run: skipped",
            "| point_goal | sooper |",
        ],
        3,
    ),
    "05_softae": (["| info_gain | 1 |", "| random | 1 |", "zero-shot swing_up return", "softae_study"], 1),
    "06_ultrasound": (
        ["| abdomen |", "10 N, tilt 0.3 rad: mean intensity", "images/s", "| us_navigate |", "ultrasound: x86_64"],
        3,
    ),
    "07_hardware": (
        [
            "robot serving on tcp://127.0.0.1:",
            "policy side p50",
            "robot process exit code: 0",
            "bridge_latency: PointMassRobot",
        ],
        2,
    ),
}
FAST = {"04_sooper"}  # ≈ 15 s; the others compile JAX programs (≈ 30–80 s each on 2 busy cores)


def _text(outputs: list) -> str:
    return "".join(
        str(out.get("text", ""))
        + "".join(str(out.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/markdown", "text/html"))
        for out in outputs
    )


def _outputs(notebook: nbformat.NotebookNode) -> list:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _execute(name: str) -> nbformat.NotebookNode | Exception:
    try:
        return build.execute(build.build(build.SOURCES / f"{name}.py"), "small", timeout_s=600)
    except Exception as err:  # noqa: BLE001 — reported by the notebook's own test
        return err


@pytest.fixture(scope="module")
def executed(request) -> dict:
    """The notebooks selected in this session, executed two at a time: their kernels spend most of their time
    tracing and compiling JAX programs, one core each. {name: executed notebook or the exception raised}."""
    from concurrent.futures import ThreadPoolExecutor

    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.originalname == "test_notebook_runs_with_the_small_budget_and_shows_its_results"
    ]
    names.sort(key=lambda n: n in FAST)  # the quick one last
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(names, pool.map(_execute, names), strict=False))


def test_every_notebook_source_has_its_expectations_here():
    assert sorted(s.stem for s in build.sources()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in EXPECTED])
def test_notebook_runs_with_the_small_budget_and_shows_its_results(name, executed):
    if isinstance(executed[name], Exception):
        raise executed[name]
    outputs = _outputs(executed[name])
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    text = _text(outputs)
    assert "budget: small" in text
    strings, figures = EXPECTED[name]
    for expected in strings:
        assert expected in text, f"{name} does not show {expected!r}"
    shown = sum("image/png" in out.get("data", {}) for out in outputs)
    assert shown >= figures, f"{name} shows {shown} figures, expected at least {figures}"


def test_committed_notebooks_are_built_from_their_sources():
    for source in build.sources():
        committed = build.target(source)
        assert committed.is_file(), f"{committed.name} is missing: run `python experiments/notebooks/build.py`"
        notebook = nbformat.read(committed, as_version=4)
        assert build.cell_sources(notebook) == build.cell_sources(build.build(source)), (
            f"{committed.name} differs from src/{source.name}: run `python experiments/notebooks/build.py`"
        )
    assert build.main(["--check"]) == 0


def test_committed_outputs_come_only_from_the_full_budget():
    for source in build.sources():
        outputs = _outputs(nbformat.read(build.target(source), as_version=4))
        if outputs:  # executed: by `make notebooks` (full budget), never by hand with another budget
            assert "budget: full" in _text(outputs), build.target(source).name
            assert not [out for out in outputs if out.output_type == "error"], build.target(source).name


def test_percent_format_splits_markdown_and_code_cells():
    cells = build._cells("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n# %%\n\n# %%\nprint(x)\n")
    assert cells == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("code", "print(x)")]
    with pytest.raises(ValueError, match="precedes the first"):
        build._cells("import os\n# %%\nx = 1\n")
    with pytest.raises(ValueError, match="markdown cell lines"):
        build._cells("# %% [markdown]\nnot a comment\n")


def test_unknown_budget_is_rejected_with_the_allowed_ones(monkeypatch):
    monkeypatch.setenv("SAFERL_NOTEBOOK_BUDGET", "huge")
    with pytest.raises(ValueError, match=r"'huge'.*small, full"):
        nbhelpers.budget()
    monkeypatch.setenv("SAFERL_NOTEBOOK_BUDGET", "full")
    assert nbhelpers.budget() == "full"
    with pytest.raises(ValueError, match="budget must be one of small, full"):
        build.execute(nbformat.v4.new_notebook(), "medium")


# --- experiments/notebooks/benchmarks.ipynb: the committed benchmark results in one place (no source: it
# only loads results) --------------------------------------------------------------------------------------


def test_benchmark_notebook_runs_and_shows_every_committed_result():
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / "benchmarks.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = _outputs(notebook)
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, errors[0]
    text = _text(outputs)
    # every committed results JSON is rendered (the notebook skips only missing files)
    for result in sorted((ROOT / "experiments" / "benchmarks" / "results").glob("*.json")):
        assert result.stem in text, f"{result.name} is not shown by the notebook"
    assert "sooper_table: " in text and "| safe_cartpole | sooper |" in text  # experiments/results/ too
