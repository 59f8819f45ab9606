"""The commands the README and the guides quote run as written from a clone: each doc's shell
blocks, in order, in a folder holding nothing but the clone's pipelines, the venv and the
database a first start leaves (a backup needs something to copy).
A ComfyUI the docs name by its URL is a simulated one on loopback. Left out: what needs Discord
(`run`), the demo (tests/bot/test_demo.py), and placeholders a reader fills in (`path/to/`)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

from bot.cli import main
from comfy.simulator import SimulatedComfy

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
RUNNABLE = re.compile(r"^(\.venv/bin/comfy-curator |mkdir )")
NEEDS_MORE = re.compile(r"path/to/| demo\b|comfy-curator run\b")
URL = re.compile(r"^https?://")


def commands(doc: Path) -> list[str]:
    found = []
    for block in BLOCK.findall(doc.read_text(encoding="utf-8")):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            parts = [p.strip() for p in line.split("&&")]
            if parts and all(RUNNABLE.match(p) and not NEEDS_MORE.search(p) for p in parts):
                found.append(line)
    return found


QUOTED = {doc.name: commands(doc) for doc in DOCS}


def test_the_docs_quote_commands_to_run() -> None:
    assert len(QUOTED["README.md"]) >= 4 and QUOTED["operations.md"]


def words(text: str, cwd: Path) -> list[str]:
    """The arguments the shell would pass for `text` (quotes, `$(date +%F)` and all)."""
    done = subprocess.run(["bash", "-c", f"printf '%s\\0' {text}"], cwd=cwd,
                          capture_output=True, text=True, check=True)
    return done.stdout.split("\0")[:-1]


@contextmanager
def simulated_comfy(tmp_path: Path) -> Iterator[str]:
    """A simulated ComfyUI served from a thread of its own, as the commands run in this one."""
    started, stop = threading.Event(), threading.Event()
    url: list[str] = []

    async def serve() -> None:
        async with SimulatedComfy(duration=0.01, root=tmp_path / "comfy") as sim:
            url.append(sim.url)
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the simulated ComfyUI did not start"
    yield url[0]
    stop.set()
    thread.join(10)


@pytest.mark.parametrize("doc", [d for d, quoted in QUOTED.items() if quoted])
def test_the_commands_a_doc_quotes_run_as_written(doc: str, tmp_path: Path, monkeypatch,
                                                  capsys) -> None:
    """In the test's own process (a fresh interpreter per command would cost seconds each):
    `main` is what `.venv/bin/comfy-curator` runs."""
    (tmp_path / "pipelines").symlink_to(ROOT / "pipelines")
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k in {"DATABASE_URL", "DATA_DIR"}
                 or k.startswith("DISCORD_")]:
        monkeypatch.delenv(name)
    names_a_comfy = any(URL.match(a) for c in QUOTED[doc] for a in c.split())
    with simulated_comfy(tmp_path) if names_a_comfy else nullcontext("") as comfy_url:
        for command in [".venv/bin/comfy-curator db upgrade", *QUOTED[doc]]:
            run_command(doc, command, comfy_url, tmp_path, capsys)


def run_command(doc: str, command: str, comfy_url: str, tmp_path: Path, capsys) -> None:
    for part in (p.strip() for p in command.split("&&")):
        program, _, rest = part.partition(" ")
        args = [comfy_url if URL.match(a) else a for a in words(rest, tmp_path)]
        if program == "mkdir":
            for folder in (a for a in args if not a.startswith("-")):
                (tmp_path / folder).mkdir(parents=True, exist_ok=True)
            continue
        assert program == ".venv/bin/comfy-curator"
        code = main(args)
        assert code == 0, f"{doc}: `{command}` failed:\n{capsys.readouterr().err}"
