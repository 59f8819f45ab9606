"""The comfy-curator command: real database file, real pipeline folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo
    for name in ("DISCORD_TOKEN", "DISCORD_GUILD_ID", "CURATOR_ROLE_ID", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    return tmp_path


def test_pipeline_import_and_list(env, capsys):
    assert main(["pipeline", "import", str(REPO / "pipelines" / "cpu-demo")]) == 0
    assert "imported pipeline “cpu-demo”" in capsys.readouterr().out
    assert main(["pipeline", "import", str(REPO / "pipelines" / "cpu-demo")]) == 0
    assert "already imported, unchanged" in capsys.readouterr().out
    assert main(["pipeline", "list"]) == 0
    assert "cpu-demo: base → refine → upscale" in capsys.readouterr().out


def test_bad_pipeline_is_one_clear_line(env, capsys):
    (env / "ui.json").write_text('{"nodes": [], "links": []}')
    assert main(["pipeline", "import", str(env / "ui.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("comfy-curator: ") and "Export (API)" in err
    assert "Traceback" not in err


def test_default_database_lives_under_data(env, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL")
    assert main(["db", "upgrade"]) == 0
    assert (env / "data" / "comfy-curator.db").is_file()


def test_missing_and_wrong_settings_name_themselves(env, monkeypatch, capsys):
    assert main(["run"]) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("MAX_CHILDREN_PER_NODE", "0")
    assert main(["pipeline", "list"]) == 2
    err = capsys.readouterr().err
    assert "MAX_CHILDREN_PER_NODE is not valid" in err and err.count("\n") == 1
    monkeypatch.setenv("MAX_CHILDREN_PER_NODE", "3")
    monkeypatch.setenv("COMFY_URL", "localhost:8188")
    assert main(["pipeline", "list"]) == 2
    assert "COMFY_URL is not valid" in capsys.readouterr().err


def test_env_file_is_read(env, capsys):
    (env / ".env").write_text("DISCORD_TOKEN=abc\nDISCORD_GUILD_ID=1\n")
    assert main(["run"]) == 2
    assert "CURATOR_ROLE_ID is not set" in capsys.readouterr().err


def test_unreachable_comfy_url_stops_start_up(env, monkeypatch, capsys):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (env / ".env").write_text(
        f"DISCORD_TOKEN=abc\nDISCORD_GUILD_ID=1\nCURATOR_ROLE_ID=2\n"
        f"COMFY_URL=http://127.0.0.1:{port}\n")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"comfy-curator: COMFY_URL: ComfyUI at http://127.0.0.1:{port} "
                          "is not reachable")
    assert "Traceback" not in err
