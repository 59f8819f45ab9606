"""/approve: a preview that changes nothing, then the approval in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from app.context import App, RunRef
from app.news import Reachable, RunNews, run_news
from app.transaction import look, transaction
from orchestration.approvals import ApprovalPreview, ApprovalResult, approval_preview, approve_step
from orchestration.overview import run_in_question


@dataclass(frozen=True)
class Preview:
    run_id: int
    step: int
    preview: ApprovalPreview


@dataclass(frozen=True)
class Approved:
    result: ApprovalResult
    news: RunNews  # pairs of the approved step now say they are done; notices that follow


async def preview_approval(app: App, ref: RunRef, step: int, k: int | None) -> Preview:
    """What `approve` would let advance, after the same checks. The ratings are fitted afresh
    for it, and that is rolled back with the rest: a preview changes nothing."""
    async with look(app) as session:
        run_id = await run_in_question(session, ref.run_id, ref.channel_id)
        return Preview(run_id, step, await approval_preview(session, run_id, step, k))


async def approve(
    app: App, run_id: int, step: int, k: int | None, by: str, reachable: Reachable
) -> Approved:
    async with transaction(app) as session:
        result = await approve_step(session, run_id, step, k, by)
    app.wake()
    return Approved(result, await run_news(app, run_id, reachable))
