"""The comfy-curator command: real database file, real pipeline folders."""

from __future__ import annotations

import asyncio
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


def test_export_votes_writes_one_json_line_per_vote(env, capsys):
    import asyncio
    import json

    from db.engine import create_engine, create_session_factory
    from tests.committed import record_vote
    from tests.factories import add_candidate, make_run

    assert main(["pipeline", "import", str(REPO / "pipelines" / "cpu-demo")]) == 0

    async def vote() -> tuple[int, list[int]]:
        engine = create_engine(f"sqlite+aiosqlite:///{env}/cli.db")
        try:
            async with create_session_factory(engine)() as s:
                run = await make_run(s, "cpu-demo", variables={"prompt": "a red fox"})
                ids = [await add_candidate(s, run, 1) for _ in range(3)]
                await record_vote(s, run, ids[0], ids[1], "111")
                await record_vote(s, run, ids[2], ids[0], "222")
        finally:
            await engine.dispose()
        return run, ids

    run, ids = asyncio.run(vote())
    capsys.readouterr()
    out = env / "votes.jsonl"
    assert main(["export-votes", str(run), "-o", str(out)]) == 0
    assert f"exported 2 vote(s) of run #{run}" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["winner"]["id"], r["loser"]["id"], r["voter"]) for r in lines] == [
        (ids[0], ids[1], "111"), (ids[2], ids[0], "222")
    ]
    first = lines[0]
    assert first["prompt"] == "a red fox" and first["step"] == 1 and first["run_id"] == run
    assert Path(first["winner"]["image_path"]).is_absolute()
    assert first["winner"]["image_path"].endswith(f"fake/{run}/1.png")
    assert isinstance(first["winner"]["seed"], int)

    assert main(["export-votes", str(run)]) == 0  # standard output
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_export_votes_of_an_unknown_run(env, capsys):
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["export-votes", "42"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "comfy-curator: There is no run #42."


async def _import_checked(path: Path, url: str) -> int:
    return await asyncio.to_thread(main, ["pipeline", "import", str(path), "--check", url])


async def test_import_check_refuses_a_pipeline_the_comfyui_cannot_run(env, capsys):
    import json

    from comfy.simulator import SimulatedComfy

    folder = env / "needs-models"
    folder.mkdir()
    workflow = json.loads((REPO / "pipelines/sdxl-refine-upscale/01-txt2img.json").read_text())
    workflow["4"]["inputs"]["ckpt_name"] = "sd_xl_base_1.0.safetensors"
    workflow["20"] = {"class_type": "FaceDetailer", "inputs": {}}
    (folder / "01-base.json").write_text(json.dumps(workflow))
    models = {"checkpoints": ["juggernaut_xl.safetensors"]}
    async with SimulatedComfy(duration=0.01, root=env / "comfy", models=models) as sim:
        assert await _import_checked(folder, sim.url) == 1
        err = capsys.readouterr().err.splitlines()
        assert err == [
            f"comfy-curator: pipeline “needs-models” cannot run on ComfyUI at {sim.url}; "
            "nothing was imported:",
            f"step 1 (base) needs checkpoint 'sd_xl_base_1.0.safetensors'; ComfyUI at {sim.url} "
            "has: juggernaut_xl.safetensors",
            f"step 1 (base) uses node FaceDetailer (#20); ComfyUI at {sim.url} does not have it "
            "(a custom node to install there?)",
        ]
        assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
        assert await asyncio.to_thread(main, ["pipeline", "list"]) == 0
        assert "no pipelines yet" in capsys.readouterr().out

        assert await _import_checked(REPO / "pipelines" / "sdxl-refine-upscale", sim.url) == 0
        out = capsys.readouterr().out
        assert "imported pipeline “sdxl-refine-upscale”" in out
        assert (f"checked against ComfyUI at {sim.url}: it has every node and model file the "
                "workflows name (inputs set by checkpoint, negative_prompt, prompt are checked "
                "when a run starts)") in out
        await sim.go_down()
        assert await _import_checked(REPO / "pipelines" / "cpu-demo", sim.url) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"comfy-curator: --check: ComfyUI at {sim.url} is not reachable")
        assert err.rstrip().endswith("nothing was imported.") and "Traceback" not in err
    assert await asyncio.to_thread(main, ["pipeline", "list"]) == 0
    assert "cpu-demo" not in capsys.readouterr().out


def test_database_an_upgrade_cannot_repair_is_one_clear_line(env, capsys):
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(env / "cli.db")) as con, con:  # rows, but no schema revision
        con.execute("CREATE TABLE pipelines (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO pipelines VALUES (1, 'kept')")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"comfy-curator: database {env / 'cli.db'} has tables but no schema "
                          "revision (pipelines hold rows)") and err.count("\n") == 1
    with closing(sqlite3.connect(env / "cli.db")) as con:
        assert con.execute("SELECT name FROM pipelines").fetchall() == [("kept",)]


def test_backup_while_another_connection_keeps_writing(env, capsys):
    """The copy opens, passes the integrity check and holds every row committed before the
    backup began, with no gap; the writer was never refused meanwhile."""
    import sqlite3
    import threading
    from contextlib import closing

    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    live = env / "cli.db"
    committed = 0
    errors: list[Exception] = []
    stop, writing = threading.Event(), threading.Event()

    def write() -> None:
        nonlocal committed
        with closing(sqlite3.connect(live, timeout=0.5, isolation_level=None)) as con:
            while not stop.is_set():
                try:
                    con.execute("INSERT INTO comfy_workers VALUES (?, ?, '2026-01-01 00:00:00')",
                                (f"http://w{committed}", f"c{committed}"))
                except sqlite3.Error as err:
                    errors.append(err)
                    return
                committed += 1
                if committed == 50:
                    writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert writing.wait(timeout=30)
        before = committed
        code = main(["db", "backup", str(env / "copy.db")])
        during = committed - before
    finally:
        stop.set()
        writer.join()

    out = capsys.readouterr().out
    assert code == 0 and errors == [] and during > 0
    size = (env / "copy.db").stat().st_size
    assert out.startswith(f"wrote {env / 'copy.db'} ({size:,} bytes, integrity ok)")
    assert "images are not in it" in out
    with closing(sqlite3.connect(env / "copy.db")) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = [url for (url,) in copy.execute("SELECT url FROM comfy_workers ORDER BY rowid")]
        assert copy.execute("PRAGMA journal_mode").fetchall() == [("delete",)]  # one file
    assert before <= len(rows) <= committed
    assert rows == [f"http://w{n}" for n in range(len(rows))]
    assert sorted(p.name for p in env.iterdir() if "copy.db" in p.name) == ["copy.db"]


def test_backup_refusals_are_one_clear_line(env, monkeypatch, capsys):
    def refused(*args: str) -> str:
        assert main(["db", "backup", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("comfy-curator: ") and err.count("\n") == 1, err
        return err

    assert "there is no database at" in refused(str(env / "copy.db"))
    assert main(["db", "upgrade"]) == 0
    (env / "taken.db").write_bytes(b"mine")
    assert "taken.db already exists: a backup never overwrites" in refused(str(env / "taken.db"))
    assert (env / "taken.db").read_bytes() == b"mine"
    assert f"folder {env / 'nowhere'} does not exist" in refused(str(env / "nowhere" / "c.db"))
    (env / "notes.txt").write_text("not a database, " * 512)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{env / 'notes.txt'}")
    assert "could not be copied as a SQLite database" in refused(str(env / "copy.db"))
    assert not [p.name for p in env.iterdir() if "copy.db" in p.name]  # nor a part of one


def test_a_database_held_by_another_program_is_one_line(env, monkeypatch, capsys):
    import subprocess
    import sys

    import db.engine

    assert main(["db", "upgrade"]) == 0
    monkeypatch.setattr(db.engine, "BUSY_TIMEOUT", 0.2)
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.procs.sqlite_holder", str(env / "cli.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        capsys.readouterr()
        assert main(["pipeline", "list"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("comfy-curator: The database is busy (another program")
    finally:
        holder.kill()
        holder.wait()


def test_every_missing_setting_is_named_in_one_line(env, monkeypatch, capsys):
    monkeypatch.setenv("DISCORD_TOKEN", "")  # blank is as good as missing
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for name in ("DISCORD_TOKEN", "DISCORD_GUILD_ID", "CURATOR_ROLE_ID"):
        assert f"{name} is not set" in err


def test_every_invalid_setting_is_named_in_one_line(env, monkeypatch, capsys):
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    monkeypatch.setenv("DATABASE_URL", "not a url")
    monkeypatch.setenv("TOP_K", "zero")
    assert main(["pipeline", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("comfy-curator: 3 settings are wrong: ")
    assert "LOG_LEVEL is not valid" in err and "DEBUG, INFO, WARNING, ERROR" in err
    assert "DATABASE_URL is not valid" in err and "sqlite+aiosqlite:///" in err
    assert "TOP_K is not valid" in err


@pytest.mark.parametrize(("url", "words"), [
    ("postgresql+asyncpg://bot@localhost/curator", "postgresql is not supported"),
    ("mysql+aiomysql://bot@localhost/curator", "mysql is not supported"),
    ("sqlite:///data/curator.db", "write sqlite+aiosqlite:///data/curator.db"),
])
def test_a_database_the_bot_cannot_use_is_one_line(env, monkeypatch, capsys, url, words):
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "DATABASE_URL is not valid" in err and words in err
    assert list(env.iterdir()) == []


def test_a_misspelt_setting_is_warned_about(env, capsys):
    (env / ".env").write_text("DISCORD_GUID_ID=1\nCOMFY_URL=http://127.0.0.1:8188\n")
    assert main(["db", "upgrade"]) == 0
    err = capsys.readouterr().err
    assert "DISCORD_GUID_ID in .env is not a setting; did you mean DISCORD_GUILD_ID?" in err


def test_the_settings_template_names_every_setting_and_parses(env, monkeypatch):
    from bot.config import Settings, load_settings

    template = REPO / ".env.example"
    names = [line.split("=", 1)[0] for line in template.read_text().splitlines()
             if line and not line.startswith("#")]
    assert sorted(names) == sorted(n.upper() for n in Settings.model_fields)
    for line in template.read_text().splitlines():  # `docker --env-file` keeps quotes
        assert "'" not in line.partition("=")[2] and '"' not in line.partition("=")[2]
    monkeypatch.delenv("DATABASE_URL")
    settings = load_settings(template)  # the template as it is: every default, ids blank
    assert settings.discord_token is None and settings.top_k == 3


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"comfy-curator {version('comfy-curator')}\n"


def test_run_help_names_the_required_settings(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("DISCORD_TOKEN", "DISCORD_GUILD_ID", "CURATOR_ROLE_ID"))


def test_pipeline_import_help_names_every_form_it_takes(capsys):
    with pytest.raises(SystemExit):
        main(["pipeline", "import", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for form in ("a folder with pipeline.yaml", "a .yaml file naming the steps",
                 "a folder of workflow .json files", "one workflow .json",
                 "API format", "--check"):
        assert form in out, form


def test_export_into_a_missing_folder_is_one_line(env, capsys):
    assert main(["export-votes", "1", "-o", str(env / "nowhere" / "votes.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "nowhere" in err and "does not exist" in err


def test_an_unwritable_data_folder_is_one_line(env, monkeypatch, capsys):
    blocked = env / "blocked"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{blocked}/sub/curator.db")
    assert main(["pipeline", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "DATABASE_URL" in err and str(blocked) in err


def test_an_unreachable_discord_is_one_line(env, monkeypatch, capsys):
    import socket

    import discord.http

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    monkeypatch.setenv("DISCORD_TOKEN", "x.y.z")
    monkeypatch.setenv("DISCORD_GUILD_ID", "1")
    monkeypatch.setenv("CURATOR_ROLE_ID", "2")
    monkeypatch.setattr("bot.startup.check_workers", _no_check)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("comfy-curator: Discord cannot be reached")


async def _no_check(urls: list[str]) -> None:
    """No ComfyUI is needed to find that Discord is out of reach."""


def test_the_database_lives_under_data_dir(env, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DATA_DIR", str(env / "elsewhere"))
    assert main(["db", "upgrade"]) == 0
    assert (env / "elsewhere" / "comfy-curator.db").is_file()
    assert not (env / "data").exists()


def test_a_folder_without_data_says_where_it_looked(env, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL")
    for command in (["pipeline", "list"], ["export-votes", "1"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert str(env / "data" / "comfy-curator.db") in err and "DATA_DIR" in err
    assert not (env / "data").exists()  # nothing was made where nothing was


def test_a_data_dir_that_cannot_take_files_stops_run_in_one_line(env, monkeypatch, capsys):
    (env / "taken").write_text("a file where the folder should be")
    monkeypatch.setenv("DATA_DIR", str(env / "taken"))
    monkeypatch.setenv("DISCORD_TOKEN", "x.y.z")
    monkeypatch.setenv("DISCORD_GUILD_ID", "1")
    monkeypatch.setenv("CURATOR_ROLE_ID", "2")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"comfy-curator: DATA_DIR {env / 'taken'} cannot take files")


def test_a_misspelt_setting_in_the_environment_is_warned_about(env, monkeypatch, capsys):
    monkeypatch.setenv("CURATOR_ROLE_IDS", "2")
    assert main(["db", "upgrade"]) == 0
    err = capsys.readouterr().err
    assert ("CURATOR_ROLE_IDS in the environment is not a setting; did you mean "
            "CURATOR_ROLE_ID?") in err
