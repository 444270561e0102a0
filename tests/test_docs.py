"""The repository is self-contained: no tracked file points to a path outside it (issue 12 item 5).

The contract and the coding rules once lived in a sibling directory that a clone does not have; now
they are docs/contract.md and docs/coding-rules.md. This keeps it that way: no mention of that old
directory, no relative path that climbs out of the repository, and no markdown link to a file that
is not there.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OLD_SPEC = "shared" + "/" + "spec"  # spelled apart so this file does not match itself
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
UP = re.compile(r"(?<![\w./])((?:\.\./)+[\w.\-/]*)")  # a relative path that climbs, one level or more
FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.S | re.M)  # also indented, in a list item


def _tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in names.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            data = path.read_bytes()
            if b"\0" not in data[:8192]:
                files.append(path)
    return files


FILES = _tracked_text_files() if (ROOT / ".git").exists() else []


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_files_to_check():
    if not FILES:
        pytest.skip("not a git checkout")
    assert any(p.name == "README.md" for p in FILES) and any(p.suffix == ".py" for p in FILES)


def test_no_file_points_to_the_old_spec_directory():
    hits = [f"{_rel(p)}:{n}" for p in FILES
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if OLD_SPEC in line]
    assert not hits, f"{OLD_SPEC} is not in the repository; point to docs/contract.md or docs/coding-rules.md: {hits}"


def test_no_relative_path_climbs_out_of_the_repository():
    """A `../` path, read from the file's own directory, must stay inside the repository. In
    markdown, fenced blocks are skipped: their paths are relative to files the reader creates."""
    bad = []
    for p in FILES:
        text = p.read_text(errors="replace")
        if p.suffix == ".md":
            text = FENCE.sub("", text)
        for match in UP.finditer(text):
            if not _inside(p.parent / match.group(1)):
                bad.append(f"{_rel(p)}: {match.group(1)}")
    assert not bad, f"paths outside the repository: {bad}"


def test_markdown_links_point_to_files_in_the_repository():
    bad = []
    for p in FILES:
        if p.suffix != ".md":
            continue
        for target in LINK.findall(FENCE.sub("", p.read_text(errors="replace"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same file
            path = p.parent / target.split("#")[0]
            if not _inside(path) or not path.exists():
                bad.append(f"{_rel(p)}: {target}")
    assert not bad, f"markdown links to nothing in the repository: {bad}"


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The patterns find the old kind of pointer (so a pass above means something)."""
    readme = f"- `../{OLD_SPEC}/events.md`: the contract.\nSee [rules](../{OLD_SPEC}/coding-rules.md)."
    assert [m.group(1) for m in UP.finditer(readme)] == [f"../{OLD_SPEC}/events.md", f"../{OLD_SPEC}/coding-rules.md"]
    assert not _inside(ROOT / f"../{OLD_SPEC}/events.md")
    assert LINK.findall(readme) == [f"../{OLD_SPEC}/coding-rules.md"]
    assert _inside(ROOT / "docs" / "../schemas/")
    assert UP.findall("x = a/../b and ../c") == ["../c"]
    two_up = "../" * 2  # not spelled out: this file is checked too
    overlay = f"2. Write the overlay:\n\n   ```yaml\n   resources:\n     - {two_up}deploy/k8s\n   ```\nafter"
    assert UP.findall(overlay) == [f"{two_up}deploy/k8s"]
    assert UP.findall(FENCE.sub("", overlay)) == []
