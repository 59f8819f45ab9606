"""The Dockerfile copies everything the installed bot needs (no Docker engine is needed to
check that): every package, the pipelines the demo reads, and the files pip installs from."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copied() -> set[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    names: set[str] = set()
    for line in text.splitlines():
        if m := re.match(r"COPY\s+(.+)\s+\S+$", line.strip()):
            names.update(m.group(1).split())
    return names


def test_every_package_and_install_file_is_copied():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied()
    assert {"pyproject.toml", "constraints.txt", "README.md", "pipelines"} <= copied()
    assert all((ROOT / name).exists() for name in copied())


def test_no_runtime_path_outside_the_packages():
    """Code reads files beside it only as package data (`pipelines.shipped`), so an install
    that is not a clone, and the image, have every file it reads."""
    found = set()
    for source in ROOT.glob("*/*.py"):
        if source.parts[-2] in {"tests", "benchmarks", "docs"}:
            continue
        text = source.read_text(encoding="utf-8")
        found.update(re.findall(r'parents\[\d\]\s*/\s*"([^"]+)"', text))
    assert not found


def test_the_shipped_pipelines_are_package_data():
    import fnmatch

    from pipelines import shipped

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["pipelines"]
    files = [p.relative_to(ROOT / "pipelines").as_posix()
             for p in (ROOT / "pipelines").rglob("*")
             if p.is_file() and p.suffix != ".pyc" and p.name != "__init__.py"]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files)
    assert (shipped("cpu-demo") / "pipeline.yaml").is_file()


def test_the_data_folder_is_a_volume_and_settings_come_from_the_environment():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'VOLUME ["/app/data"]' in text
    assert "DATA_DIR=/app/data" in text
    assert "COPY .env" not in text and ".env" in (ROOT / ".dockerignore").read_text()
    assert re.search(r'CMD \["comfy-curator", "run"\]', text)


def test_the_compose_file_runs_the_image_as_the_code_expects():
    import yaml

    from bot.config import Settings

    [(_name, bot)] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"].items()
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert bot["build"] == "." and bot["restart"] == "unless-stopped"
    assert bot["env_file"] == ".env" and (ROOT / ".env.example").is_file()
    assert set(bot["environment"]) <= {n.upper() for n in Settings.model_fields}
    data = bot["environment"]["DATA_DIR"]
    assert f"DATA_DIR={data}" in dockerfile and f'VOLUME ["{data}"]' in dockerfile
    assert bot["volumes"] == [f"./data:{data}"]
    assert bot["environment"]["DATABASE_URL"].startswith(f"sqlite+aiosqlite:///{data}/")
    assert "CMD" not in bot and "command" not in bot  # the image's own CMD: comfy-curator run
