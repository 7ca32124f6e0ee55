"""The docs stay true to the repository: no development-machine paths, every relative markdown link lands on a file
inside the repository, and the README's example outputs are what the commands print today."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from roofsim.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Absolute paths of a development machine (POSIX home/work/root folders, macOS /Users, Windows drives). /tmp is
# allowed: code may use it as a real temporary location.
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root|home|Users)/|(?<![\w\\])[A-Za-z]:\\\\?[A-Za-z]")
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", "test-artifacts", ".mypy_cache", ".ruff_cache"}
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", re.M)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.I)  # https:, mailto:, ... and in-page anchors


def _repo_files() -> list[Path]:
    """Tracked files when git is available (what a clone holds), else every file outside build/tool folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True).stdout
        return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)
                and not any(part.endswith(".egg-info") for part in p.parts)]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _markdown_files() -> list[Path]:
    return [p for p in _repo_files() if p.suffix == ".md"]


def _links(text: str) -> list[str]:
    """Link targets outside code (fenced blocks and inline code spans show commands, not links)."""
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    return [m.group(1) or m.group(2) for m in LINK.finditer(prose)]


def test_machine_path_pattern() -> None:
    for bad in ("see /work/main/build/x.json", "/root/.cache", "/home/me/x.toml", "C:\\Users\\me", "(/Users/a/b)", "D:\\\\data"):
        assert MACHINE_PATH.search(bad), bad
    for ok in ("simulator/workload.py", "/tmp/x", "~/.cache/roofsim/plan", "../shared/data", "https://a.b/home/x",
               r"(\d\d:\d\d)"):
        assert not MACHINE_PATH.search(ok), ok


def test_no_machine_paths_in_tracked_text_files() -> None:
    hits = []
    for path in _repo_files():
        text = None if path == Path(__file__).resolve() else _text(path)  # this file quotes bad paths on purpose
        if text is None:
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            # a URL's path may hold such folder names legitimately; only the rest of the line is checked
            if MACHINE_PATH.search(re.sub(r"[a-z]+://\S+", "", line)):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "absolute paths of a development machine:\n" + "\n".join(hits)


def test_link_extraction() -> None:
    text = "[a](docs/a.md) ![b](img.png \"t\") `[c](no.md)`\n```\n[d](no2.md)\n```\n[e]: ref.md\n[f](#x) [g](https://x)"
    assert _links(text) == ["docs/a.md", "img.png", "ref.md", "#x", "https://x"]


def test_markdown_links_resolve_inside_the_repository() -> None:
    files = _markdown_files()
    assert ROOT / "README.md" in files
    bad = []
    for md in files:
        for target in _links(md.read_text(encoding="utf-8")):
            if EXTERNAL.match(target):
                continue
            path = target.split("#", 1)[0]
            resolved = (ROOT / path.lstrip("/")) if path.startswith("/") else (md.parent / path).resolve()
            where = f"{md.relative_to(ROOT)}: ({target})"
            if path.startswith("/"):
                bad.append(f"{where} is absolute")
            elif not resolved.is_relative_to(ROOT):
                bad.append(f"{where} leaves the repository")
            elif not resolved.exists():
                bad.append(f"{where} does not exist")
    assert not bad, "\n".join(bad)


def _blocks_after(text: str, heading: str) -> list[str]:
    start = text.index(heading)
    return re.findall(r"^```\n(.*?)^```", text[start:], re.M | re.S)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], stderr: bool = True) -> list[str]:
    capsys.readouterr()
    main(argv)
    out = capsys.readouterr()
    return [line.rstrip() for line in (out.out + (out.err if stderr else "")).splitlines()]


def test_readme_demo_output_is_what_make_demo_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The README block is the demo's output except its wall-time line, which varies from run to run."""
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo = re.search(r"^demo:.*\n\t\S*roofsim (.+)$", make, re.M)
    assert demo is not None
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = [line.rstrip() for line in _blocks_after(readme, "## What `make demo` prints")[0].splitlines()]
    printed = _run(shlex.split(demo.group(1)), capsys, stderr=False)  # stderr holds the progress bar
    assert sum(line.startswith("simulated ") for line in shown) == 1
    assert [x for x in shown if not x.startswith("simulated ")] == [x for x in printed if not x.startswith("simulated ")]


def test_readme_command_blocks_print_what_they_show(capsys: pytest.CaptureFixture[str]) -> None:
    """Every README block that opens with `$ roofsim ...` shows that command's whole output (these are fast)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```\n(.*?)^```", readme, re.M | re.S) if b.startswith("$ roofsim ")]
    assert len(blocks) >= 2
    for block in blocks:
        command, *shown = block.splitlines()
        assert [line.rstrip() for line in shown] == _run(shlex.split(command)[2:], capsys), command
