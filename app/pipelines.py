"""Importing pipelines and listing them."""

from __future__ import annotations

from pathlib import Path

from app.context import App
from app.transaction import look, transaction
from orchestration import pipelines
from orchestration.pipelines import ImportResult, PipelineSpec, PipelineSummary


async def import_pipeline(app: App, path: Path) -> ImportResult:
    """A pipeline folder, YAML or workflow JSON, read and stored in one go."""
    async with transaction(app) as session:
        return await pipelines.import_pipeline(session, path)


async def store_pipeline(app: App, spec: PipelineSpec) -> ImportResult:
    async with transaction(app) as session:
        return await pipelines.store_pipeline(session, spec)


async def list_pipelines(app: App) -> list[PipelineSummary]:
    async with look(app) as session:
        return await pipelines.list_pipelines(session)
