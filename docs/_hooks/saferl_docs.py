"""MkDocs hooks for the saferl site (`mkdocs.yml: hooks`), so that the site is built from the repository as it is:

* the committed plots (`experiments/results/*.png`, `experiments/benchmarks/results/*.png`) and notebooks
  (`experiments/notebooks/*.ipynb`) become site files under `plots/`, `plots/benchmarks/` and `notebooks/`
  without copies in `docs/`;
* `reference/cli.md` is rendered from the two CLIs' own click commands (`saferl`, `saferl-deploy`) at build time;
* nav entries for pages other engineers are still writing (`OPTIONAL_PAGES`) are dropped while their file is
  missing, so that `mkdocs build --strict` still fails on any other nav entry without a page.
"""

from __future__ import annotations

import pathlib

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

REPO = pathlib.Path(__file__).resolve().parents[2]
# site path prefix -> (folder in the repository, file pattern)
EXTERNAL_FILES = {
    "plots": (REPO / "experiments" / "results", "*.png"),
    "plots/benchmarks": (REPO / "experiments" / "benchmarks" / "results", "*.png"),
}
NOTEBOOKS = REPO / "experiments" / "notebooks"  # site path notebooks/NAME.ipynb
OPTIONAL_PAGES = {"gymnasium.md", "softae_safety.md"}
CLI_PAGE = "reference/cli.md"


def _drop_missing_optional(nav: list, docs_dir: pathlib.Path) -> list:
    kept = []
    for entry in nav:
        if isinstance(entry, dict):
            ((title, value),) = entry.items()
            if isinstance(value, list):
                kept.append({title: _drop_missing_optional(value, docs_dir)})
            elif not (value in OPTIONAL_PAGES and not (docs_dir / value).exists()):
                kept.append(entry)
        elif not (entry in OPTIONAL_PAGES and not (docs_dir / entry).exists()):
            kept.append(entry)
    return kept


def on_config(config):
    if config.nav:
        config.nav = _drop_missing_optional(config.nav, pathlib.Path(config.docs_dir))
    return config


def _command_help(command, prog: str) -> str:
    """The plain-text help of `prog` as click formats it: typer's rich panels are switched off (they would
    write terminal codes); typer's own (vendored) click context, as the CLI uses."""
    command.rich_markup_mode = None
    context = command.context_class(command, info_name=prog, terminal_width=100, max_content_width=100)
    return command.get_help(context).rstrip()


def _cli_markdown() -> str:
    import typer

    from hardware.cli import app as deploy_app
    from saferl.cli.main import app as saferl_app

    lines = [
        "# CLI reference",
        "",
        "Generated at build time from the CLIs' own definitions (`saferl/cli/main.py`, `hardware/cli.py`): "
        "what `saferl --help` and `saferl COMMAND --help` print, without the terminal formatting.",
        "",
    ]
    for prog, app in (("saferl", saferl_app), ("saferl-deploy", deploy_app)):
        group = typer.main.get_command(app)
        lines += [f"## `{prog}`", "", "```text", _command_help(group, prog), "```", ""]
        context = group.context_class(group, info_name=prog)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            lines += [f"### `{prog} {name}`", "", "```text", _command_help(command, f"{prog} {name}"), "```", ""]
    return "\n".join(lines)


@event_priority(100)  # before mkdocs-jupyter's on_files wraps the notebooks
def on_files(files: Files, config) -> Files:
    for prefix, (folder, pattern) in EXTERNAL_FILES.items():
        for path in sorted(folder.glob(pattern)):
            files.append(File.generated(config, f"{prefix}/{path.name}", abs_src_path=str(path)))
    # a File rooted at experiments/ rather than a generated one: mkdocs-jupyter's wrapper of a page file reads
    # its source path from src_dir, which generated files do not have
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(NOTEBOOKS.parent),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    files.append(File.generated(config, CLI_PAGE, content=_cli_markdown()))
    return files
