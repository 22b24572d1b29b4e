"""The fenced blocks of README.md and docs/*.md, by name: `<!-- run: NAME -->` above a block names it,
and the tests run each block by that name (test_docs.py holds which test runs which)."""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.S | re.M)
NAME = re.compile(r"<!-- run: ([\w-]+) -->\s*$")


@dataclass(frozen=True)
class Block:
    document: Path
    name: str | None
    language: str
    text: str


def blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for fence in FENCE.finditer(text):
            before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
            name = NAME.search(before)
            found.append(Block(document, name.group(1) if name else None, fence.group(2), fence.group(3)))
    return found


def doc_block(name: str) -> str:
    (block,) = [b for b in blocks() if b.name == name]
    return block.text


def run_bash(name: str, cwd: Path, env: dict, timeout: float,
             replace: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the block with bash (stopping at the first failure) in `cwd`, as a user pastes it (after
    `replace`, for placeholders)."""
    script = doc_block(name)
    for old, new in (replace or {}).items():
        assert old in script, f"{old!r} is not in the block {name}"
        script = script.replace(old, new)
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def user_folder(path: Path) -> Path:
    """A folder where a block's relative paths land, as in a checkout: `.venv` is this environment,
    `benchmarks/` and `scripts/` the repository's."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".venv").symlink_to(Path(sys.prefix))
    for folder in ("benchmarks", "scripts"):
        (path / folder).symlink_to(ROOT / folder)
    return path


def clean_env(**overrides: str) -> dict:
    """This environment without the NEWS_AI_ settings a test might have set, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWS_AI_") or k in (
        "NEWS_AI_OPENVINO_CACHE", "NEWS_AI_MAX_MISSING_CROSS_SHARE")}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **overrides}


def copy_dagster_yaml(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home
