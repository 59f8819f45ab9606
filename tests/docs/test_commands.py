"""The commands the README and the guides quote run as written from a clone: each doc's shell
blocks, in order, in a folder holding nothing but the clone's pipelines, the venv and the
database a first start leaves (a backup needs something to copy).
Left out: what needs a ComfyUI or Discord (a URL, `run`), the demo (tests/bot/test_demo.py),
and placeholders a reader fills in (`path/to/`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
RUNNABLE = re.compile(r"^(\.venv/bin/comfy-curator |mkdir )")
NEEDS_MORE = re.compile(r"https?://|path/to/| demo\b|comfy-curator run\b")


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


@pytest.mark.parametrize("doc", [d for d, quoted in QUOTED.items() if quoted])
def test_the_commands_a_doc_quotes_run_as_written(doc: str, tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "pipelines").symlink_to(ROOT / "pipelines")
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "DATA_DIR"} and not k.startswith("DISCORD_")}
    for command in [".venv/bin/comfy-curator db upgrade", *QUOTED[doc]]:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{doc}: `{command}` failed:\n{done.stderr}"
