"""The documentation: the README stays a short front page whose links resolve, and the MkDocs site builds with
warnings as errors (a broken link or anchor, a page missing from the nav, an API object mkdocstrings cannot
find, a nav entry without its page all fail `mkdocs build --strict`)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README_MAX_LINES = 250  # issue #32: the README is a front page; the manual and the figures live in docs/
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def relative_link_targets(markdown: str) -> list[str]:
    """Targets of the Markdown links and images outside code blocks that point into the repository (no URL
    scheme, not a bare #anchor), with any #anchor cut off."""
    targets = []
    for target in LINK.findall(FENCE.sub("", markdown)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_relative_link_targets_skip_urls_anchors_and_code():
    text = (
        "[a](docs/x.md#y) ![b](docs/media/c.gif) [c](https://example.org) [d](#here)\n"
        "```bash\n[e](not/a/link.md)\n```\n"
    )
    assert relative_link_targets(text) == ["docs/x.md", "docs/media/c.gif"]


def test_readme_is_a_short_front_page():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_in_the_readme_resolves():
    targets = relative_link_targets((REPO / "README.md").read_text(encoding="utf-8"))
    assert targets, "the README links into the docs"
    missing = [target for target in targets if not (REPO / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


@pytest.mark.slow  # ≈ 6–10 s on 2 cores (griffe reads the packages, nbconvert renders 8 notebooks)
def test_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    # the hooks and the griffe extension are found relative to the repository root
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    # what the build hooks add from outside docs/: the CLI reference, the committed plots, the notebooks
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("saferl train", "saferl eval", "saferl-deploy run"):
        assert command in cli, f"{command!r} missing from the generated CLI reference"
    assert "--constraint" in cli
    for plot in sorted((REPO / "experiments" / "results").glob("*.png")):
        assert (site / "plots" / plot.name).is_file(), f"plot {plot.name} not in the site"
    for notebook in sorted((REPO / "experiments" / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / notebook.stem / "index.html").is_file(), f"{notebook.name} not rendered"
    # the API reference comes from the docstrings, config fields with their comments
    agents = (site / "reference" / "api" / "agents" / "index.html").read_text(encoding="utf-8")
    assert "PETSConfig" in agents and "cost_discounting" in agents
    assert "γ_c of the cost value head" in agents  # PPOConfig.cost_discounting's comment (griffe extension)
