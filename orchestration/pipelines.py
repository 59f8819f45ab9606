"""Pipelines from files: a folder with `pipeline.yaml`, a folder of numbered workflow JSON
files, one YAML file naming its steps in order, or a single workflow JSON (a one-step
pipeline); every step is a ComfyUI API-format workflow.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from comfy.workflow import WorkflowError, parse_workflow
from db.models import Pipeline, PipelineStep
from orchestration.errors import Conflict, InvalidInput
from orchestration.runs import RUN_START_VARIABLES, SYSTEM_ORDER, SYSTEM_VARIABLES
from orchestration.text import NAME_MAX, quoted, slugify

PIPELINE_FILES = ("pipeline.yaml", "pipeline.yml")
# A workflow file larger than this is refused: exports are tens of kilobytes, and every job of
# a run renders its step's workflow again.
MAX_WORKFLOW_BYTES = 5 * 2**20


class PipelineFileError(InvalidInput):
    """A pipeline that cannot be imported; the message says which file and why."""


@dataclass(frozen=True)
class StepSpec:
    position: int
    name: str
    slug: str
    workflow: dict[str, Any]
    variables: list[str]
    source: str


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    source: str
    steps: list[StepSpec]
    warnings: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)  # run variables' defaults

    @property
    def variables(self) -> list[str]:
        return sorted({v for s in self.steps for v in s.variables})


def variables_text(variables: Iterable[str], defaults: Mapping[str, Any]) -> str:
    """`checkpoint, tint=3368652`: each run variable, with its default where it has one."""
    return ", ".join(f"{v}={defaults[v]}" if v in defaults else v for v in variables) or "none"


@dataclass(frozen=True)
class ImportResult:
    pipeline_id: int
    name: str
    steps: list[str]
    variables: list[str]
    created: bool  # False when the same pipeline was already imported
    warnings: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def variables_text(self) -> str:
        return variables_text(self.variables, self.defaults)


def _step_name_from_file(path: Path) -> str:
    return path.stem.lstrip("0123456789").lstrip("-_ .") or path.stem


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PipelineFileError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise PipelineFileError(f"{path}: expected keys name, description and steps")
    return data


def _step_entries(data: dict[str, Any], yaml_path: Path) -> list[tuple[str, Path]]:
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PipelineFileError(f"{yaml_path}: 'steps' must be a list of at least one step")
    entries: list[tuple[str, Path]] = []
    for i, entry in enumerate(steps, start=1):
        if isinstance(entry, str):
            file = yaml_path.parent / entry
            entries.append((_step_name_from_file(file), file))
        elif isinstance(entry, dict) and isinstance(entry.get("workflow"), str):
            file = yaml_path.parent / entry["workflow"]
            entries.append((str(entry.get("name") or _step_name_from_file(file)), file))
        else:
            raise PipelineFileError(
                f"{yaml_path}: step {i} needs a 'workflow' (path of an API-format JSON file)"
            )
        home = yaml_path.parent.resolve()
        if not entries[-1][1].resolve().is_relative_to(home):
            # Said the same whether or not the file exists: an upload must learn nothing
            # about the host.
            raise PipelineFileError(
                f"step {i}: a pipeline may name only workflow files inside its own folder; "
                f"move the file into {home.name}/ and name it by a path relative to "
                f"{yaml_path.name}"
            )
    return entries


# What import takes, for the command's help and its refusal of anything else.
ACCEPTED_FORMS = (
    "a folder with pipeline.yaml (the steps in order), a .yaml file naming the steps, "
    "a folder of workflow .json files (one step each, in file-name order), or one workflow "
    ".json (a one-step pipeline); workflows in ComfyUI's API format (Workflow → Export (API))"
)


def load_pipeline_spec(path: Path) -> PipelineSpec:
    """Read and validate every workflow of a pipeline; nothing is stored."""
    if not path.exists():
        raise PipelineFileError(f"{path} does not exist.")
    if path.is_dir():
        yaml_path = next((path / n for n in PIPELINE_FILES if (path / n).is_file()), None)
        if yaml_path is not None:
            data = _read_yaml(yaml_path)
            entries = _step_entries(data, yaml_path)
        else:
            files = sorted(path.glob("*.json"))
            if not files:
                raise PipelineFileError(
                    f"{path.name}: no pipeline.yaml and no workflow .json files in this folder"
                )
            data = {}
            entries = [(_step_name_from_file(f), f) for f in files]
        default_name = path.resolve().name
    elif path.suffix.lower() in (".yaml", ".yml"):
        data = _read_yaml(path)
        entries = _step_entries(data, path)
        default_name = path.stem
    elif path.suffix.lower() == ".json":
        data = {}
        entries = [(_step_name_from_file(path), path)]  # one workflow: a one-step pipeline
        default_name = path.stem
    else:
        raise PipelineFileError(f"{path}: expected {ACCEPTED_FORMS}")

    root = (path if path.is_dir() else path.parent).resolve()

    def shown(file: Path) -> str:
        """A workflow file as the pipeline names it, not where the host keeps it."""
        try:
            return str(file.resolve().relative_to(root))
        except ValueError:
            return file.name

    name = str(data.get("name") or default_name).strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise PipelineFileError(
            f"the pipeline's name {quoted(name)} has {len(name)} characters; "
            f"give it a name of 1 to {NAME_MAX}"
        )
    declared, defaults = _declared_variables(data.get("variables"))
    steps: list[StepSpec] = []
    warnings: list[str] = []
    named: dict[str, int] = {}
    for position, (step_name, file) in enumerate(entries, start=1):
        where = f"step {position} {quoted(step_name)}"
        if step_name in named:
            raise PipelineFileError(
                f"steps {named[step_name]} and {position} are both named {quoted(step_name)}; "
                "give each step a name of its own"
            )
        named[step_name] = position
        if len(step_name) > NAME_MAX:
            raise PipelineFileError(
                f"{where}: a step name may be at most {NAME_MAX} characters; "
                f"this one has {len(step_name)}"
            )
        if not file.is_file():
            raise PipelineFileError(f"{where}: workflow file {shown(file)} does not exist")
        size = file.stat().st_size
        if size > MAX_WORKFLOW_BYTES:
            raise PipelineFileError(
                f"{where}: {shown(file)} is {size / 2**20:.1f} MB; a workflow may be at most "
                f"{MAX_WORKFLOW_BYTES // 2**20} MB (export it in API format, without images)"
            )
        try:
            info = parse_workflow(file.read_text(encoding="utf-8"), shown(file))
        except WorkflowError as err:
            raise PipelineFileError(f"{where}: {err}") from err
        except UnicodeDecodeError as err:
            raise PipelineFileError(f"{where}: {shown(file)} is not a UTF-8 text file") from err
        uses_parent = "parent_image" in info.variables
        if position == 1 and uses_parent:
            raise PipelineFileError(
                f"{where}: uses {{{{parent_image}}}}, but step 1 makes base images and has "
                "no parent"
            )
        if position > 1 and not uses_parent:
            warnings.append(
                f"{where} does not use {{{{parent_image}}}}: its images will not build on "
                "the parent's"
            )
        warnings += placeholder_warnings(where, info.variables - set(declared),
                                         info.single_braced)
        steps.append(
            StepSpec(
                position=position,
                name=step_name,
                slug=f"{position:02d}-{slugify(step_name, fallback='step')}",
                workflow=info.workflow,
                variables=sorted(info.variables - SYSTEM_VARIABLES),
                source=str(file),
            )
        )
    return PipelineSpec(name, str(data.get("description") or ""), str(path), steps, warnings,
                        defaults)


def _declared_variables(value: Any) -> tuple[list[str], dict[str, Any]]:
    """`variables:` names the run variables of the pipeline's own, as a list, or as a mapping
    of each to its default (None: no default)."""
    if value is None:
        return [], {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value), {}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for key, default in value.items():
            if default is not None and not isinstance(default, str | int | float | bool):
                raise PipelineFileError(
                    f"the default of '{key}' must be text, a number or true/false, not "
                    f"{default!r}")
        return list(value), {k: v for k, v in value.items() if v is not None}
    raise PipelineFileError("'variables' must list the run variables the workflows use, e.g. "
                            "[checkpoint, style], or give each a default, e.g. {style: noir}")


KNOWN_VARIABLES = (*RUN_START_VARIABLES, *SYSTEM_ORDER)


def placeholder_warnings(
    where: str, variables: Iterable[str], single_braced: Iterable[str]
) -> list[str]:
    """What a step's placeholders may have meant: a name the bot does not fill in is a run
    variable of its own (or a typo) unless pipeline.yaml declares it under `variables:`, and
    `{name}` with one pair of braces is sent as it is."""
    known = ", ".join(KNOWN_VARIABLES)
    found = []
    for name in sorted(set(variables) - set(KNOWN_VARIABLES)):
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.75)
        if close:
            found.append(
                f"{where} uses {{{{{name}}}}}, which the bot does not fill in ({known}): did "
                f"you mean {{{{{close[0]}}}}}? As it is, /run start must give it "
                f"(variables: {name}=…)"
            )
        else:
            found.append(
                f"{where} uses {{{{{name}}}}}, a variable of its own (the bot fills in "
                f"{known}): /run start must give it, as variables: {name}=…"
            )
    for name in sorted(set(single_braced)):
        found.append(
            f"{where} has {{{name}}} in single braces, which is sent to ComfyUI as it is; a "
            f"placeholder takes two: {{{{{name}}}}}"
        )
    return found


def _same(pipeline: Pipeline, spec: PipelineSpec) -> bool:
    return pipeline.defaults == spec.defaults and [
        (s.name, s.workflow) for s in pipeline.steps] == [(s.name, s.workflow) for s in spec.steps]


async def store_pipeline(session: AsyncSession, spec: PipelineSpec) -> ImportResult:
    existing = await session.scalar(
        select(Pipeline).where(Pipeline.name == spec.name).options(selectinload(Pipeline.steps))
    )
    names = [s.name for s in spec.steps]
    if existing is not None:
        if _same(existing, spec):
            return ImportResult(
                existing.id, existing.name, names, spec.variables, False, spec.warnings,
                spec.defaults,
            )
        raise Conflict(
            f"A different pipeline named “{spec.name}” is already imported (#{existing.id}). "
            "Runs keep using the workflows they started with, so give the new version "
            "another name (the 'name:' in pipeline.yaml)."
        )
    pipeline = Pipeline(name=spec.name, description=spec.description, source=spec.source,
                        defaults=spec.defaults)
    session.add(pipeline)
    await session.flush()
    for s in spec.steps:
        session.add(
            PipelineStep(
                pipeline_id=pipeline.id,
                position=s.position,
                name=s.name,
                slug=s.slug,
                workflow=s.workflow,
                variables=s.variables,
            )
        )
    await session.flush()
    return ImportResult(pipeline.id, pipeline.name, names, spec.variables, True, spec.warnings,
                        spec.defaults)


async def import_pipeline(session: AsyncSession, path: Path) -> ImportResult:
    """Validate every workflow first; store only when all of them are usable."""
    spec = await asyncio.to_thread(load_pipeline_spec, path)  # file reads stay off the loop
    return await store_pipeline(session, spec)


@dataclass(frozen=True)
class PipelineSummary:
    id: int
    name: str
    description: str
    steps: list[str]
    variables: list[str]
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def variables_text(self) -> str:
        return variables_text(self.variables, self.defaults)


async def list_pipelines(session: AsyncSession) -> list[PipelineSummary]:
    pipelines = await session.scalars(
        select(Pipeline).options(selectinload(Pipeline.steps)).order_by(Pipeline.name)
    )
    return [
        PipelineSummary(
            p.id,
            p.name,
            p.description,
            [s.name for s in p.steps],
            sorted({v for s in p.steps for v in s.variables}),
            dict(p.defaults),
        )
        for p in pipelines
    ]
