"""Runs: one creative session on a pipeline, with its own variables, settings and tree."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from db.base import utcnow
from db.models import Pipeline, PipelineRun, PipelineRunStep, PipelineStep
from orchestration.errors import Conflict, InvalidInput, MissingVariables, NotFound
from orchestration.states import HoldKind, RunStatus, SelectionOrder
from orchestration.text import NAME_MAX, quoted, slugify

# Placeholders the system fills for every job; a run never supplies them.
# Filled in by the bot for every job, in the order messages name them.
SYSTEM_ORDER = ("seed", "parent_image", "output_prefix")
SYSTEM_VARIABLES = frozenset(SYSTEM_ORDER)
# Given by /run start's own options.
RUN_START_VARIABLES = ("prompt", "negative_prompt")
# Run variables that may be left out; the value used when they are.
OPTIONAL_VARIABLES: dict[str, Any] = {"negative_prompt": ""}
# Why no worker could serve a run with these steps and values (one line each; [] if one can).
WorkerCheck = Callable[[Sequence[PipelineStep], Mapping[str, Any]], list[str]]
_REFUSAL_CHARS = 1700  # the problem lines of a refusal, within one Discord message


@dataclass(frozen=True)
class RunSettings:
    """Per-run knobs (docs/configuration.md); defaults come from the environment via bot.config."""

    max_children: int = 3
    target_leaves: int = 10
    order: SelectionOrder = SelectionOrder.breadth_first
    gates: bool = True
    budget: int = 200
    top_k: int = 3

    def validate(self) -> None:
        for name, value, floor in (
            ("N (children per parent)", self.max_children, 1),
            ("T (target final candidates)", self.target_leaves, 1),
            ("budget", self.budget, 1),
            ("k", self.top_k, 1),
        ):
            if value < floor:
                raise InvalidInput(f"{name} must be at least {floor}, got {value}.")


@dataclass(frozen=True)
class RunCreated:
    run_id: int
    name: str
    pipeline: str
    folder: str
    steps: int
    variables: dict[str, Any] = field(default_factory=dict)


def run_folder_prefix(run_id: int) -> str:
    """How the folder of run `run_id` under DATA_DIR begins: `run-0014-` (its name follows)."""
    return f"run-{run_id:04d}-"


RUN_FOLDERS = "run-"  # how every run's folder under DATA_DIR begins


def run_id_of_folder(name: str) -> int | None:
    """The run a folder under DATA_DIR was made for (`run-0014-…` → 14), if it is one."""
    number, sep, _ = name.removeprefix(RUN_FOLDERS).partition("-")
    if not name.startswith(RUN_FOLDERS) or not sep or not number.isdigit():
        return None
    return int(number)


async def get_run(session: AsyncSession, run_id: int) -> PipelineRun:
    run = await session.get(PipelineRun, run_id)
    if run is None:
        raise NotFound(f"There is no run #{run_id}.")
    return run


async def get_running_run(session: AsyncSession, run_id: int) -> PipelineRun:
    run = await get_run(session, run_id)
    if run.status is RunStatus.completed:
        raise Conflict(f"Run #{run.id} “{run.name}” is completed; nothing can change in it.")
    return run


async def find_pipeline(session: AsyncSession, name_or_id: str | int) -> Pipeline:
    stmt = select(Pipeline).options(selectinload(Pipeline.steps))
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        stmt = stmt.where(Pipeline.id == int(name_or_id))
    else:
        stmt = stmt.where(Pipeline.name == name_or_id)
    pipeline = (await session.scalars(stmt)).one_or_none()
    if pipeline is None:
        raise NotFound(f"There is no pipeline {quoted(str(name_or_id))}. Import it first.")
    return pipeline


def required_variables(pipeline: Pipeline) -> set[str]:
    """Run variables the pipeline's workflows need; `pipeline.steps` must be loaded."""
    return {v for step in pipeline.steps for v in step.variables} - SYSTEM_VARIABLES


async def create_run(
    session: AsyncSession,
    pipeline: str | int,
    name: str,
    variables: dict[str, Any],
    settings: RunSettings,
    *,
    created_by: str = "",
    check: WorkerCheck | None = None,
) -> RunCreated:
    """Create a run with one PipelineRunStep per step; step 1 approved with no top-K filter.

    With `check`, a run that no worker can serve is refused before anything is written."""
    settings.validate()
    name = name.strip()
    if not name:
        raise InvalidInput("A run needs a name.")
    if len(name) > NAME_MAX:
        raise InvalidInput(
            f"A run name may be at most {NAME_MAX} characters; this one has {len(name)}. "
            "Give a shorter one; no run was started."
        )
    found = await find_pipeline(session, pipeline)
    if not found.steps:
        raise InvalidInput(f"Pipeline “{found.name}” has no steps.")
    values = {**found.defaults, **{k: v for k, v in variables.items() if v is not None}}
    needed = required_variables(found)
    missing = sorted(n for n in needed if n not in values and n not in OPTIONAL_VARIABLES)
    if missing:
        raise MissingVariables(
            f"Pipeline “{found.name}” needs {', '.join(missing)}; "
            f"give {'it' if len(missing) == 1 else 'them'} when starting the run."
        )
    for opt, default in OPTIONAL_VARIABLES.items():
        if opt in needed:
            values.setdefault(opt, default)
    problems = check(found.steps, values) if check is not None else []
    if problems:
        raise InvalidInput(
            f"No ComfyUI can run “{found.name}” with these values, so no run was started:\n"
            + problem_lines(problems)
        )

    now = utcnow()
    run = PipelineRun(
        pipeline_id=found.id,
        name=name,
        status=RunStatus.running,
        variables=values,
        max_children=settings.max_children,
        target_leaves=settings.target_leaves,
        order=settings.order,
        gates=settings.gates,
        budget=settings.budget,
        top_k=settings.top_k,
        base_quota=settings.max_children,
        created_by=created_by,
        created_at=now,
    )
    session.add(run)
    await session.flush()
    run.folder = run_folder_prefix(run.id) + slugify(name, fallback="run")
    for step in found.steps:
        first = step.position == 1
        session.add(
            PipelineRunStep(
                run_id=run.id,
                step=step.position,
                step_id=step.id,
                approved=first,
                approved_at=now if first else None,
                approved_by=(created_by or "system") if first else None,
            )
        )
    await session.flush()
    return RunCreated(run.id, run.name, found.name, run.folder, len(found.steps), values)


async def complete_run(session: AsyncSession, run_id: int) -> PipelineRun:
    run = await get_running_run(session, run_id)
    run.status = RunStatus.completed
    run.completed_at = utcnow()
    return run


def problem_lines(problems: Sequence[str], limit: int = _REFUSAL_CHARS) -> str:
    """One line per problem, as many as fit in `limit` characters."""
    shown: list[str] = []
    for problem in problems:
        if sum(len(p) + 3 for p in shown) + len(problem) > limit:
            shown.append(f"… and {len(problems) - len(shown)} more")
            break
        shown.append(problem)
    return "\n".join(f"• {p}" if not p.startswith("… and") else p for p in shown)


async def hold_run(
    session: AsyncSession, run_id: int, reason: str, kind: HoldKind = HoldKind.failures
) -> PipelineRun:
    """Stop giving the run new jobs until the hold is lifted; jobs in flight still finish."""
    run = await get_running_run(session, run_id)
    run.held_reason = reason or "held"
    run.held_kind = kind
    run.held_at = utcnow()
    await session.flush()
    return run


async def hold_for_storage(session: AsyncSession, run_id: int, reason: str) -> bool:
    """Hold a run because its files cannot be written; True if this made the hold.

    A run already on hold keeps its hold: a person's hold must not be lifted by the data
    folder working again.
    """
    run = await get_run(session, run_id)
    if run.status is RunStatus.completed or run.held_reason is not None:
        return False
    await hold_run(session, run_id, reason, HoldKind.storage)
    return True


async def held_runs(session: AsyncSession, kind: HoldKind) -> list[int]:
    rows = await session.scalars(
        select(PipelineRun.id).where(PipelineRun.held_kind == kind,
                                     PipelineRun.held_reason.is_not(None))
    )
    return list(rows)


async def lift_holds(
    session: AsyncSession, kind: HoldKind, run_ids: Sequence[int] | None = None
) -> list[int]:
    """Lift the holds of this kind (of these runs, or all); a hold of another kind stays.

    Returns the runs lifted, each once even when several workers lift at the same time."""
    stmt = (
        update(PipelineRun)
        .where(PipelineRun.held_kind == kind, PipelineRun.held_reason.is_not(None),
               PipelineRun.status == RunStatus.running)
        .values(held_reason=None, held_at=None, held_kind=None)
        .returning(PipelineRun.id)
    )
    if run_ids is not None:
        stmt = stmt.where(PipelineRun.id.in_(run_ids))
    return sorted((await session.execute(stmt)).scalars())


async def resume_run(session: AsyncSession, run_id: int) -> PipelineRun:
    run = await get_running_run(session, run_id)
    if run.held_reason is None:
        raise Conflict(f"Run #{run.id} “{run.name}” is not on hold.")
    run.held_reason = None
    run.held_kind = None
    run.held_at = None
    return run
