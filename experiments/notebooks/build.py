"""Build the benchmark notebooks from their plain-Python sources and optionally execute them.

A source `src/NN_name.py` is in the percent format: `# %%` starts a code cell, `# %% [markdown]` a markdown
cell whose lines are `# `-comments. It becomes `NN_name.ipynb` next to this file (cell ids numbered, no outputs
unless executed). Executing runs a fresh `python3` kernel in this directory with SAFERL_NOTEBOOK_BUDGET set.

    python experiments/notebooks/build.py                          # write every .ipynb (unexecuted)
    python experiments/notebooks/build.py --execute --budget full  # `make notebooks`: run them, keep outputs
    python experiments/notebooks/build.py --check                  # exit 1 if a committed .ipynb drifted
    python experiments/notebooks/build.py 02_models --execute      # one notebook (small budget)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"
BUDGETS = ("small", "full")
_MARKDOWN, _CODE = "# %% [markdown]", "# %%"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def sources() -> list[pathlib.Path]:
    """Every notebook source, in order (src/NN_name.py)."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def _cells(text: str) -> list[tuple[str, str]]:
    """[(cell type, source)] of a percent-format file; ValueError if text precedes the first cell marker."""
    cells: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(_MARKDOWN):
            cells.append(("markdown", []))
        elif line.startswith(_CODE):
            cells.append(("code", []))
        elif not cells:
            if line.strip():
                raise ValueError(f"line {number}: {line!r} precedes the first '# %%' cell marker")
        elif cells[-1][0] == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"line {number}: markdown cell lines must be '# ' comments, got {line!r}")
            cells[-1][1].append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            cells[-1][1].append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells if "\n".join(lines).strip()]


def build(source: pathlib.Path) -> nbformat.NotebookNode:
    """The unexecuted notebook of a percent-format source."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for index, (kind, text) in enumerate(_cells(source.read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(text, id=f"{source.stem[:2]}-{index:02d}"))
    nbformat.validate(notebook)
    return notebook


def target(source: pathlib.Path) -> pathlib.Path:
    return HERE / f"{source.stem}.ipynb"


def cell_sources(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """What must not drift between a source and its committed notebook: the cells' types and sources."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def execute(notebook: nbformat.NotebookNode, budget: str, timeout_s: int = 1800) -> nbformat.NotebookNode:
    """Run `notebook` top to bottom in a fresh kernel (cwd: this directory, this process's environment plus
    SAFERL_NOTEBOOK_BUDGET=budget); nbclient raises CellExecutionError at the first failing cell."""
    from nbclient import NotebookClient

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    client = NotebookClient(
        notebook,
        timeout=timeout_s,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute(env={**os.environ, "SAFERL_NOTEBOOK_BUDGET": budget})
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to build (e.g. 02_models; default: all)")
    parser.add_argument("--execute", action="store_true", help="run each notebook and store its outputs")
    parser.add_argument("--budget", choices=BUDGETS, default="small", help="SAFERL_NOTEBOOK_BUDGET when executing")
    parser.add_argument("--check", action="store_true", help="only compare the committed notebooks with the sources")
    args = parser.parse_args(argv)
    chosen = sources()
    if args.names:
        known = {s.stem: s for s in chosen}
        unknown = [n for n in args.names if n not in known]
        if unknown:
            parser.error(f"unknown notebook(s) {', '.join(unknown)}; available: {', '.join(known)}")
        chosen = [known[n] for n in args.names]
    drifted = []
    for source in chosen:
        notebook = build(source)
        if args.check:
            path = target(source)
            if not path.is_file() or cell_sources(nbformat.read(path, as_version=4)) != cell_sources(notebook):
                drifted.append(path.name)
            continue
        if args.execute:
            start = time.perf_counter()
            execute(notebook, args.budget)
            print(f"{source.stem}: executed ({args.budget} budget) in {time.perf_counter() - start:.0f} s")
        nbformat.write(notebook, target(source))
        print(f"written: {target(source).relative_to(HERE.parents[1])}")
    if drifted:
        print(f"out of date (run `python experiments/notebooks/build.py`): {', '.join(drifted)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
