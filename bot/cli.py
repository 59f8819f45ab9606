"""The `comfy-curator` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

from app.backup import backup_database
from app.context import App, RunRef
from app.deletion import delete_pipeline, delete_run, disk_use, plan_run_deletion
from app.overview import votes_of
from app.pipelines import list_pipelines, store_pipeline
from bot.config import REQUIRED_BY_RUN, ConfigError, Settings, load_settings, unknown_settings
from bot.deletion import deleted_text, deletion_text
from comfy.capabilities import check_steps, fetch_capabilities
from comfy.client import ComfyClient
from comfy.errors import ComfyError
from db.engine import create_engine, create_session_factory, is_sqlite
from db.migrate import MigrationError, upgrade_database
from orchestration.busy import BUSY, is_busy
from orchestration.errors import DomainError, InvalidInput
from orchestration.pipelines import ACCEPTED_FORMS, PipelineSpec, load_pipeline_spec
from orchestration.runs import run_id_of_folder
from orchestration.states import RunStatus
from orchestration.text import byte_size, plural

log = logging.getLogger("comfy_curator")
T = TypeVar("T")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _existing_database(settings: Settings) -> None:
    """A command that only reads refuses a SQLite file that is not there, saying where it
    looked, rather than leaving an empty database in whatever folder it was run from."""
    url = make_url(settings.database_url)
    if not is_sqlite(settings.database_url) or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database).expanduser().absolute()
    if path.is_file():
        return
    how = (f"DATA_DIR={settings.data_dir}, in {Path.cwd()}" if settings.uses_default_database
           else "DATABASE_URL")
    raise ConfigError(f"there is no database at {path} ({how}): run this in the folder your "
                      "data is in, or set DATA_DIR or DATABASE_URL to it.")


async def _with_database(
    settings: Settings, work: Callable[..., Awaitable[T]], *args: object, reading: bool = False
) -> T:
    """`work(app, *args)`: a use case run against the upgraded database, which is then let go;
    `reading`: a command that only reads, which needs a database to be there already."""
    if reading:
        _existing_database(settings)
    await upgrade_database(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        return await work(App(create_session_factory(engine)), *args)
    finally:
        await engine.dispose()


async def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> None:
    await upgrade_database(settings.database_url)
    print(f"database is up to date: {settings.database_url}")


async def cmd_db_backup(settings: Settings, args: argparse.Namespace) -> None:
    backup = await asyncio.to_thread(backup_database, settings.database_url, args.path)
    print(f"wrote {backup.path} ({backup.size:,} bytes, integrity ok): a copy of {backup.source} "
          f"as committed when the backup began")
    print(f"images are not in it: copy the run folders of {settings.data_dir} too "
          "(rsync or cp, also while the bot runs)")


async def check_on_worker(spec: PipelineSpec, url: str) -> list[str]:
    """What the pipeline needs that this ComfyUI lacks; run variables are not known yet, so
    inputs set by them are left for the check at run start."""
    async with ComfyClient(url, retry_attempts=2, retry_wait=0.5) as client:
        try:
            caps = await fetch_capabilities(client)
        except ComfyError as err:
            raise InvalidInput(f"--check: {err}; nothing was imported.") from err
    return check_steps(spec.steps, {}, caps)


async def cmd_pipeline_import(settings: Settings, args: argparse.Namespace) -> int:
    spec = await asyncio.to_thread(load_pipeline_spec, Path(args.path))
    if args.check:
        problems = await check_on_worker(spec, args.check)
        if problems:
            print(f"comfy-curator: pipeline “{spec.name}” cannot run on ComfyUI at "
                  f"{args.check.rstrip('/')}; nothing was imported:", file=sys.stderr)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1
    result = await _with_database(settings, store_pipeline, spec)
    verb = "imported" if result.created else "already imported, unchanged:"
    print(
        f"{verb} pipeline “{result.name}” (#{result.pipeline_id}), "
        f"{len(result.steps)} steps: {' → '.join(result.steps)}"
    )
    print(f"run variables: {result.variables_text}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if args.check:
        later = f" (inputs set by {', '.join(result.variables)} are checked when a run starts)"
        print(f"checked against ComfyUI at {args.check.rstrip('/')}: it has every node and "
              f"model file the workflows name{later if result.variables else ''}")
    return 0


async def cmd_pipeline_list(settings: Settings, _args: argparse.Namespace) -> None:
    pipelines = await _with_database(settings, list_pipelines, reading=True)
    if not pipelines:
        print("no pipelines yet: comfy-curator pipeline import pipelines/cpu-demo")
    for p in pipelines:
        print(f"#{p.id} {p.name}: {' → '.join(p.steps)} (variables: {p.variables_text})")


async def cmd_pipeline_delete(settings: Settings, args: argparse.Namespace) -> None:
    done = await _with_database(settings, delete_pipeline, args.name, reading=True)
    print(f"deleted pipeline “{done.name}” (#{done.pipeline_id}) and its "
          f"{plural(done.steps, 'step')}")


def _confirmed(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


async def cmd_runs_delete(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = settings.data_dir

    async def work(app: App) -> int:
        plan = await plan_run_deletion(app, RunRef(args.run), data_dir)
        print(deletion_text(data_dir, plan))
        if not args.yes and not await asyncio.to_thread(_confirmed, "Delete? [y/N] "):
            print("comfy-curator: nothing was deleted (answer y to delete, or give --yes)",
                  file=sys.stderr)
            return 1
        print(deleted_text(data_dir, await delete_run(app, args.run, data_dir)))
        return 0

    return await _with_database(settings, work, reading=True)


def _size(count: int) -> str:
    """A size to read and the exact figure, to compare with `du -b`."""
    return byte_size(count) if count < 1000 else f"{byte_size(count)} ({count:,} bytes)"


async def cmd_runs_disk(settings: Settings, _args: argparse.Namespace) -> None:
    data_dir = settings.data_dir
    use = await _with_database(settings, disk_use, data_dir, reading=True)
    if not use.runs:
        print("no runs yet")
    for run in use.runs:
        state = "completed" if run.status is RunStatus.completed else "running"
        print(f"#{run.run_id} {run.name} ({state}): {plural(run.images, 'image')}, "
              f"{plural(run.folder.files, 'file')}, {_size(run.folder.bytes)} in "
              f"{data_dir / run.folder.name}")
    for left in use.leftovers:
        number = run_id_of_folder(left.name)
        how = (f"comfy-curator runs delete {number} removes it" if number is not None
               else "remove it by hand")
        print(f"{data_dir / left.name}: no run owns it (left by a deletion that stopped before "
              f"its files were removed): {plural(left.files, 'file')}, {_size(left.bytes)}; "
              f"{how}")
    print(f"total: {_size(use.bytes)} under {data_dir}")


async def cmd_export_votes(settings: Settings, args: argparse.Namespace) -> None:
    folder = Path(args.output).parent
    if args.output != "-" and not folder.is_dir():
        raise ConfigError(f"-o {args.output}: the folder {folder} does not exist; create it "
                          "or write elsewhere. Nothing was exported.")
    records = await _with_database(settings, votes_of, args.run, settings.data_dir,
                                   reading=True)
    lines = "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records)
    if args.output == "-":
        sys.stdout.write(lines)
    else:
        await asyncio.to_thread(Path(args.output).write_text, lines, encoding="utf-8")
    where = "" if args.output == "-" else f" to {args.output}"
    print(f"exported {len(records)} vote(s) of run #{args.run}{where}", file=sys.stderr)


async def cmd_run(settings: Settings, _args: argparse.Namespace) -> None:
    from bot.startup import run_bot  # discord.py loads only for the bot itself

    await run_bot(settings)


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    # Imported here: Pillow, numpy, rich and the simulator are only needed by the demo.
    from bot.demo import DemoOptions, run_demo

    options = DemoOptions.from_settings(
        settings,
        data_dir=args.data_dir,
        database_url=args.database_url,
        comfy_url=args.comfy_url,
        runs=args.runs,
        n=args.n,
        k=args.k,
        duration=args.duration,
        seed=args.seed,
        votes_per_candidate=args.votes,
        timeout=args.timeout,
    )
    await run_demo(options)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole loop without Discord or a GPU: simulated ComfyUI, voter and approvals",
        description="Runs the cpu-demo pipeline for a few runs with a simulated voter and "
        "approvals, then writes a contact sheet per run. Everything goes to DATA_DIR/demo "
        "(its own database demo.db), never to the bot's database.",
    )
    demo.add_argument("--comfy-url", help="use this real ComfyUI instead of the simulated one")
    demo.add_argument("--runs", type=int, default=3, help="how many runs (default 3)")
    demo.add_argument("--n", type=int, default=2, help="children per parent (default 2)")
    demo.add_argument(
        "--k",
        type=int,
        default=None,
        help="how many candidates each approval lets grow (default TOP_K)",
    )
    demo.add_argument(
        "--duration", type=float, default=0.3, help="seconds per simulated prompt (default 0.3)"
    )
    demo.add_argument("--seed", type=int, default=1, help="seeds the scheduler and the voter")
    demo.add_argument(
        "--votes",
        type=int,
        default=3,
        help="at most this many votes per candidate of a step before it is approved "
        "(default 3)",
    )
    demo.add_argument(
        "--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)"
    )
    demo.add_argument(
        "--data-dir", type=Path, default=None, help="the demo's folder (default DATA_DIR/demo)"
    )
    demo.add_argument(
        "--database-url",
        default=None,
        help="the demo's database (default demo.db in the demo's folder)",
    )
    demo.set_defaults(func=cmd_demo)


def _version() -> str:
    try:
        return version("comfy-curator")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfy-curator",
        description="Curate ComfyUI image generation from Discord.",
    )
    parser.add_argument(
        "--version", action="version", version=f"comfy-curator {_version()}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    required = ", ".join(name.upper() for name in REQUIRED_BY_RUN)
    sub.add_parser(
        "run",
        help="start the Discord bot",
        description=f"Starts the Discord bot and the scheduler. Needs {required} (in the "
        "environment or in .env; .env.example lists every setting).",
    ).set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="migrate the database to the newest schema").set_defaults(
        func=cmd_db_upgrade
    )
    backup = db.add_parser(
        "backup",
        help="copy the SQLite database into a new file, safely while the bot runs",
        description="Copies the database with SQLite's backup API: the bot may keep running and "
        "writing; the copy holds everything committed before it began. Images are files under "
        "DATA_DIR and are not in it.",
    )
    backup.add_argument("path", type=Path, help="the new file to write (never overwritten)")
    backup.set_defaults(func=cmd_db_backup)

    pipe = sub.add_parser("pipeline", help="import and list pipelines").add_subparsers(
        dest="pipeline_command", required=True
    )
    imp = pipe.add_parser(
        "import", help="validate and store a pipeline",
        description=f"Validates every workflow, then stores the pipeline. PATH is "
        f"{ACCEPTED_FORMS}.")
    imp.add_argument("path", help="the pipeline: a folder, a .yaml file or a workflow .json")
    imp.add_argument(
        "--check",
        metavar="URL",
        help="first check the workflows against this ComfyUI (its nodes, choices and model "
        "files); nothing is imported when it lacks something",
    )
    imp.set_defaults(func=cmd_pipeline_import)
    pipe.add_parser("list", help="list imported pipelines").set_defaults(func=cmd_pipeline_list)
    drop = pipe.add_parser("delete", help="delete a pipeline that no run uses")
    drop.add_argument("name", help="the pipeline's name (or #id), as pipeline list shows it")
    drop.set_defaults(func=cmd_pipeline_delete)
    runs = sub.add_parser("runs", help="what runs take on disk, and deleting one").add_subparsers(
        dest="runs_command", required=True
    )
    runs.add_parser(
        "disk", help="each run's images and bytes under DATA_DIR, and the total"
    ).set_defaults(func=cmd_runs_disk)
    gone = runs.add_parser(
        "delete",
        help="delete a run: its rows, its images, its prompts' history on ComfyUI",
        description="Shows what goes and what stays (ComfyUI keeps its own copies of the "
        "images), then asks. Refused while a job of the run is in flight. Works while the bot "
        "runs.",
    )
    gone.add_argument("run", type=int, help="the run's number, as /runs shows it")
    gone.add_argument("--yes", action="store_true", help="do not ask")
    gone.set_defaults(func=cmd_runs_delete)
    export = sub.add_parser(
        "export-votes",
        help="write every vote of a run as JSON Lines (both images, prompt, seed, step, voter)",
    )
    export.add_argument("run", type=int, help="the run's number, as /runs shows it")
    export.add_argument(
        "-o", "--output", default="-", help="file to write (default: standard output)"
    )
    export.set_defaults(func=cmd_export_votes)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for warning in unknown_settings():
        print(f"comfy-curator: warning: {warning}", file=sys.stderr)
    try:
        settings = load_settings()
        _setup_logging(settings.log_level)
        code = asyncio.run(args.func(settings, args))
    except (ConfigError, DomainError, MigrationError) as err:
        print(f"comfy-curator: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if not is_busy(err):
            raise
        print(
            f"comfy-curator: {BUSY}: close the program that has {settings.database_url} open "
            "(a sqlite3 shell, another comfy-curator), then run this again.",
            file=sys.stderr,
        )
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
