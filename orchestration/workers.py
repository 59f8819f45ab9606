"""The ComfyUI workers this installation has used, and the client id each one always gets."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ComfyWorker


async def worker_client_id(session: AsyncSession, url: str) -> str:
    """The client id for `url`, made on first use and kept: ComfyUI sends a prompt's frames
    only to the id that queued it, so a restarted process must come back under the same id."""
    worker = await session.get(ComfyWorker, url)
    if worker is None:
        worker = ComfyWorker(url=url, client_id=f"comfy-curator-{uuid.uuid4().hex}")
        session.add(worker)
        await session.flush()
    return worker.client_id
