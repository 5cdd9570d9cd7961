"""The README is a landing page and the docs a site that builds: every command shown in either parses
with its command's own flags, every page is in the navigation, and `mkdocs build --strict` passes (a
broken link or a page missing from the site fails it)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
BEAM_OPTIONS = {"--runner", "--project", "--region", "--temp_location", "--direct_num_workers"}


def shown_commands(text: str) -> list[str]:
    """``python -m sentiment_tf.<command> …`` as shown: in code blocks (continuation lines joined,
    comments dropped) and in inline code."""
    out = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.split(r"\s+#", line, maxsplit=1)[0]
            out += [m.strip() for m in re.findall(r"python -m sentiment_tf\.[^&|;]+", line)]
    out += [m.strip() for m in re.findall(r"`(python -m sentiment_tf\.[^`]+)`", text)]
    return [c for c in out if not c.startswith("python -m sentiment_tf.<")]  # the pattern, not a command


def _parse(command: str) -> None:
    words = shlex.split(command)
    module, argv = words[2].removeprefix("sentiment_tf."), words[3:]
    parser: argparse.ArgumentParser = importlib.import_module(f"sentiment_tf.{module}").build_parser()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            if module == "batch_predict":  # Beam's own pipeline options pass through
                _, rest = parser.parse_known_args(argv)
                assert {r.split("=")[0] for r in rest if r.startswith("--")} <= BEAM_OPTIONS, rest
            else:
                parser.parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 0, f"{command!r}: {err.getvalue().strip().splitlines()[-1]}"


def test_the_readme_is_a_landing_page_starting_with_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    first_block = re.search(r"```bash\n(.*?)```", readme, flags=re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].startswith("pip install -r requirements.txt && python -m sentiment_tf.train")
    assert "python -m pytest" in first_block[1]
    # The test command installs what CI installs.
    requirements = first_block[1].split("&&")[0].split("-r")[1].strip()
    assert f"-r {requirements}" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses_with_its_flags(page: Path):
    commands = shown_commands(page.read_text(encoding="utf-8"))
    for command in commands:
        _parse(command)


def test_shown_commands_are_found_and_a_wrong_flag_is_caught():
    commands = [c for page in PAGES for c in shown_commands(page.read_text(encoding="utf-8"))]
    assert len(commands) > 40 and {c.split()[2] for c in commands} >= {
        f"sentiment_tf.{m}" for m in ("train", "predict", "serve", "finetune", "select", "monitor", "distill")}
    with pytest.raises(AssertionError, match="unrecognized arguments: --epochz"):
        _parse("python -m sentiment_tf.train --epochz 3")


def test_every_page_is_in_the_site_and_every_readme_link_resolves():
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    in_nav = set(re.findall(r":\s*(\S+\.md)\s*$", config, flags=re.M))
    assert in_nav == {p.name for p in DOCS.glob("*.md")}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (REPO / target).exists(), target


def _mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    # not -q: quiet mode stops counting warnings, and strict mode then passes a broken link
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_mkdocs_build_strict(tmp_path: Path):
    pytest.importorskip("mkdocs", reason="the docs site needs requirements-dev.txt")
    proc = _mkdocs_build(REPO, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "distillation" / "index.html").is_file()
    # The same site with one broken link does not build.
    shutil.copytree(DOCS, tmp_path / "broken" / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "broken")
    with open(tmp_path / "broken" / "docs" / "data.md", "a", encoding="utf-8") as f:
        f.write("\nSee [the missing page](missing.md).\n")
    proc = _mkdocs_build(tmp_path / "broken", tmp_path / "site2")
    assert proc.returncode != 0 and "missing.md" in proc.stderr


def test_the_pins_agree_and_their_comments_point_at_what_exists():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    def pins(lines):
        return sorted(line.split("#")[0].strip() for line in lines if line.split("#")[0].strip())

    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert pins(requirements.splitlines()) == pins(project["dependencies"])
    # One protobuf for both install commands: the Beam extra needs < 7, so the base install must not take 7.
    assert "protobuf>=6.33,<7" in pins(requirements.splitlines())
    for path in re.findall(r"(docs/\w+\.md|README\.md)", requirements):
        assert (REPO / path).is_file(), path
    assert "README \"Stack\"" not in requirements
