"""The README and docs/ stay true to the repository: links resolve (anchors included), backticked repository paths
exist, the quick start is what CI runs, and the Layout page names every module of the package."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

# Top-level folders whose paths the docs name; a backticked token starting with one of them must exist.
TOP_FOLDERS = {"pisasr", "configs", "scripts", "preprocess", "benchmarks", "tests", "docs", "examples", ".ci"}
FILE_SUFFIXES = (".py", ".yaml", ".md", ".sh", ".txt")
# Where runs write (never in the repository): `outputs/smoke/run.json`, `OUT/<stem>...`, `output_dir/final/`.
OUTPUT_PREFIXES = ("outputs/", "OUT/", "output_dir/")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`([^`]+)`")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks (kept as blank lines, so line numbers hold)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(prose(path.read_text())):
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def link_problems(page: Path) -> list[str]:
    text = prose(page.read_text())
    text = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), text)  # `[a](b)` in code is not a link
    problems = []
    for match in LINK.finditer(text):
        target = match.group(1)
        where = f"{page.relative_to(ROOT)}:{line_of(text, match.start())}: ({target})"
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http(s), mailto, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            problems.append(f"{where} no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where} no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def repository_paths(page: Path) -> list[tuple[int, str]]:
    """(line, path) of every backticked token that names a file or folder of the repository."""
    text = prose(page.read_text())
    found = []
    for match in INLINE_CODE.finditer(text):
        token = match.group(1).strip().split("::")[0]  # tests/test_x.py::test_name
        if not token or re.search(r"\s|[<*{$]|:\d", token) or token.startswith(OUTPUT_PREFIXES):
            continue
        if re.fullmatch(r"\.\w+", token) and token not in TOP_FOLDERS:  # an extension: `.txt`, `.pkl`
            continue
        first = token.split("/")[0]
        if ("/" in token and first in TOP_FOLDERS) or token.endswith(FILE_SUFFIXES):
            found.append((line_of(text, match.start()), token))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    assert link_problems(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(page):
    missing = [
        f"{page.relative_to(ROOT)}:{line}: `{token}`"
        for line, token in repository_paths(page)
        if not (ROOT / token).exists()
    ]
    assert missing == []


def quick_start_commands() -> list[str]:
    """The first two ```bash blocks under the README's "Quick start" heading."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, 'README.md has no "## Quick start" section'
    blocks = re.findall(r"^```bash[ \t]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert len(blocks) >= 2, "the quick start should be two ```bash blocks: set up and run, then the tests"
    return [block.strip() for block in blocks[:2]]


def test_quick_start_is_what_ci_runs():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for block in quick_start_commands():
        for line in block.splitlines():
            assert line.strip() in ci_lines, f"README quick start line not in .ci/run: {line}"


def test_layout_names_every_module():
    text = (ROOT / "docs" / "layout.md").read_text()
    section = re.search(r"^## Layout[ \t]*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, 'docs/layout.md has no "## Layout" section'
    listed = subprocess.run(
        ["git", "ls-files", "pisasr/*.py", "pisasr/**/*.py"], cwd=ROOT, capture_output=True, text=True
    )
    modules = sorted(set(listed.stdout.split())) if listed.returncode == 0 else []
    if not modules:  # not a git checkout: the files on disk
        modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pisasr").rglob("*.py"))
    missing = [m for m in modules if Path(m).name != "__init__.py" and Path(m).name not in section.group(1)]
    assert missing == []


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the detail into docs/"
