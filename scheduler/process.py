"""The scheduler: keeps every ComfyUI worker busy with one job at a time (docs/operations.md,
"Workers").

Each worker URL gets a loop: claim the next job, upload the parent image, build the payload,
record the prompt id, submit, follow it over the websocket, download every image, write the
files, then create the candidates. Work is event-driven — a job's end, `wake()` (a vote, an
approval, a run started or resumed) — with an APScheduler interval job as the safety net.

Order of writes, so that a crash anywhere leaves the database consistent: the prompt id is
stored before the prompt is posted; image files are written before the rows that point at
them; candidates are created in one transaction with the job's end, once per job. At start-up
each worker first reconciles the jobs it left submitted or running with ComfyUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select

from comfy.capabilities import WorkerCapabilities, check_steps, fetch_capabilities
from comfy.client import ComfyClient, PromptResult
from comfy.errors import (
    ComfyError,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnavailable,
    ComfyUnhealthy,
)
from db.engine import SessionFactory
from db.models import PipelineRun, PipelineStep
from orchestration.errors import DomainError
from orchestration.jobs import (
    UNFINISHED,
    ClaimedJob,
    JobContext,
    StoredImage,
    cancel_unsubmitted,
    claim_next_job,
    complete_job,
    end_job,
    failure_streak,
    get_job,
    job_context,
    mark_running,
    recount_child_slots,
    reject_unreadable_parent,
    unfinished_jobs,
)
from orchestration.payload import prepare_submission
from orchestration.runs import (
    held_runs,
    hold_for_storage,
    hold_run,
    lift_holds,
    problem_lines,
)
from orchestration.states import HoldKind, JobStatus, RunStatus
from orchestration.text import SCHEDULER
from orchestration.workers import worker_client_id
from scheduler.events import EventHandler, JobProgress, SchedulerEvent
from scheduler.parents import ParentUnreadable, read_parent
from scheduler.storage import (
    image_relpath,
    image_suffix,
    remove_partial_files,
    write_atomically,
)
from scheduler.thumbnails import make_thumbnail

log = logging.getLogger(__name__)

HOLD_AFTER_FAILURES = 3
# What a worker has (nodes, model files) is read when it (re)connects and again when older than
# this, so a model installed meanwhile is seen within minutes.
CAPABILITIES_MAX_AGE = 300.0
UPLOAD_SUBFOLDER = "comfy-curator"
# A job in hand when the worker loop met an unexpected error this often is failed, not retried.
RESTARTS_BEFORE_FAILING = 2
# A job's thumbnails wait for the worker's next prompt to be sent (the GPU should not wait for
# our CPU work), but no longer than this.
THUMBNAILS_WAIT = 2.0
# Errors writing a file that are the box's (a full disk, a read-only or forbidden folder, a
# quota), not the job's: the runs wait for the data folder instead of failing.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT})
TOO_DEEP = ("the workflow is nested too deeply for Python to load, fill in or send it "
            "(recursion limit); flatten the inputs that nest lists or objects")

class _JobLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the run and job it is about."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"run {extra['run_id']} job {extra['job_id']}: {msg}", kwargs


def _job_log(run_id: int, job_id: int) -> _JobLog:
    return _JobLog(log, {"run_id": run_id, "job_id": job_id})


class Scheduler:
    def __init__(
        self,
        sessions: SessionFactory,
        workers: Sequence[str],
        data_dir: Path,
        *,
        rng: random.Random | None = None,
        tick_seconds: float = 30.0,
        down_retry_seconds: float = 5.0,
        client_options: Mapping[str, Any] | None = None,
        on_event: EventHandler | None = None,
        unhealthy_job_limit: float = 600.0,
        unhealthy_max_backoff: float = 60.0,
        storage_probe_seconds: float = 10.0,
    ) -> None:
        """
        unhealthy_job_limit: how long a job may wait on a ComfyUI that answers with errors
            before it is cancelled (and made again).
        unhealthy_max_backoff: the longest pause between two tries on such a server.
        storage_probe_seconds: while runs wait for the data folder, how often a test write
            checks whether it takes files again.
        """
        if not workers:
            raise ValueError("at least one ComfyUI URL is needed")
        self.sessions = sessions
        self.workers = [w.rstrip("/") for w in workers]
        self.data_dir = data_dir
        self.rng = rng or random.Random()
        self.tick_seconds = tick_seconds
        self.down_retry_seconds = down_retry_seconds
        self.client_options = dict(client_options or {})
        self.on_event = on_event
        self.progress: dict[str, JobProgress] = {}
        self.up: dict[str, bool | None] = dict.fromkeys(self.workers)  # None: not known yet
        # What a worker's ComfyUI keeps failing with, while it answers but unhealthily.
        self.unhealthy: dict[str, str | None] = dict.fromkeys(self.workers)
        self.unhealthy_job_limit = unhealthy_job_limit
        self.unhealthy_max_backoff = unhealthy_max_backoff
        self.storage_probe_seconds = storage_probe_seconds
        self.jobs_done = 0
        self._wake = asyncio.Event()
        self._idle: dict[str, asyncio.Event] = {w: asyncio.Event() for w in self.workers}
        self._tasks: list[asyncio.Task[None]] = []
        self._thumbnailing: set[asyncio.Task[None]] = set()
        # Set while a worker has nothing more urgent to do than thumbnails: its next prompt is
        # sent, or it found no work.
        self._next_sent: dict[str, asyncio.Event] = {w: asyncio.Event() for w in self.workers}
        self._ticker: AsyncIOScheduler | None = None
        self._in_hand: dict[str, int] = {}  # worker -> the job it is working on
        self._restarts: dict[int, int] = {}  # job -> unexpected errors it met
        self._unhealthy_since: dict[int, float] = {}  # job -> first unhealthy answer
        self._unhealthy_tries: dict[str, int] = dict.fromkeys(self.workers, 0)
        self._storage_holds = True  # runs may wait for the data folder: probe until known
        self.capabilities: dict[str, WorkerCapabilities] = {}
        self._capabilities_read: dict[str, float] = {}
        self._unfit: dict[tuple[int, str], list[str]] = {}  # (run, worker) → what it lacks

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Repair what a crash may have left, then start one loop per worker and the ticker."""
        async with self.sessions() as session, session.begin():
            cancelled = await cancel_unsubmitted(session)
            fixed = await recount_child_slots(session)
        if cancelled:
            log.info("cancelled %d job(s) claimed but never submitted before the last stop",
                     cancelled)
        if fixed:
            log.warning("repaired the child counts of %d candidate(s)", fixed)
        removed = await asyncio.to_thread(remove_partial_files, self.data_dir)
        if removed:
            log.warning("removed %d unfinished image file(s) (.part-*) under %s", removed,
                        self.data_dir)
        await self._release_orphans()
        self._tasks = [
            asyncio.create_task(self._worker_loop(url), name=f"worker {url}")
            for url in self.workers
        ]
        self._ticker = AsyncIOScheduler()
        self._ticker.add_job(self.wake, "interval", seconds=self.tick_seconds,
                             id="safety-net", coalesce=True, max_instances=1)
        self._ticker.start()

    async def stop(self) -> None:
        """Stop at once. A prompt in flight is left to finish on ComfyUI; the next start
        ingests it."""
        if self._ticker is not None:
            self._ticker.shutdown(wait=False)
            self._ticker = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._in_hand.clear()
        for sent in self._next_sent.values():
            sent.set()  # no prompt to send any more: the thumbnails go first
        await self._thumbnails_made()

    def wake(self) -> None:
        """Something changed that may make work (a vote, an approval, a run started)."""
        for idle in self._idle.values():
            idle.clear()  # until each worker has looked again
        self._wake.set()

    async def wait_idle(self) -> None:
        """Wait until every worker is up and has found no work, and every new candidate has
        its thumbnail (used by the demo and tests)."""
        while True:
            await asyncio.gather(*(e.wait() for e in self._idle.values()))
            await self._thumbnails_made()
            if all(e.is_set() for e in self._idle.values()):
                return

    async def _thumbnails_made(self) -> None:
        while self._thumbnailing:
            await asyncio.gather(*self._thumbnailing)

    # -- one worker ----------------------------------------------------------------------------

    async def _worker_loop(self, url: str) -> None:
        options = {"client_id": await self._client_id(url), **self.client_options}
        async with ComfyClient(url, **options) as client:
            while True:
                try:
                    await client.system_stats()
                    await self._set_up(url, True, "")
                    await self._learn_capabilities(client)
                    await self._reconcile(client)
                    await self._serve(client)
                except ComfyUnhealthy as err:
                    self._idle[url].clear()
                    await self._set_unhealthy(url, err)
                    await self._settle(url, self._release_in_hand(url, str(err), unhealthy=True))
                    await asyncio.sleep(self._backoff(url))
                except ComfyUnavailable as err:
                    self._idle[url].clear()
                    await self._settle(url, self._release_in_hand(url,
                                                                  "ComfyUI was not reachable"))
                    await self._set_up(url, False, str(err))
                    await self._wait_until_up(client)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # a bug must not stop the GPU box for good
                    log.exception("worker %s: unexpected error; starting over in %g s", url,
                                  self.down_retry_seconds)
                    self._idle[url].clear()
                    await self._settle(url, self._end_in_hand_after_bug(url, err))
                    await asyncio.sleep(self.down_retry_seconds)

    async def _settle(self, url: str, work: Awaitable[None]) -> None:
        """Run what ends the job in hand after an error; an error in it must not end the
        worker (the job is then left to the next start's repairs)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s: could not settle the job in hand", url)

    async def _client_id(self, url: str) -> str:
        while True:
            try:
                async with self.sessions() as session, session.begin():
                    return await worker_client_id(session, url)
            except Exception:  # the database may be back in a moment; the worker must not die
                log.exception("worker %s: could not read its client id; trying again in %g s",
                              url, self.down_retry_seconds)
                await asyncio.sleep(self.down_retry_seconds)

    async def _serve(self, client: ComfyClient) -> None:
        idle = self._idle[client.url]
        while True:
            self._wake.clear()
            await self._probe_storage()
            if time.monotonic() - self._capabilities_read.get(client.url, 0.0) > (
                    CAPABILITIES_MAX_AGE):
                await self._learn_capabilities(client)
            skip = await self._runs_it_cannot_serve(client.url)
            async with self.sessions() as session, session.begin():
                claimed = await claim_next_job(session, self.rng, skip)
            if not isinstance(claimed, ClaimedJob):
                idle.set()
                self._next_sent[client.url].set()
                if self._storage_holds:  # look again soon: the hold lifts itself
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.storage_probe_seconds)
                else:
                    await self._wake.wait()
                continue
            idle.clear()
            _job_log(claimed.run_id, claimed.job_id).info("%s", claimed.reason)
            await self._run(client, claimed)

    async def _wait_until_up(self, client: ComfyClient) -> None:
        while True:
            await asyncio.sleep(self.down_retry_seconds)
            with contextlib.suppress(ComfyError):
                await client.system_stats()
                return

    async def _set_up(self, url: str, up: bool, detail: str) -> None:
        was = self.up.get(url)
        self.up[url] = up
        if not up:  # down says more than unhealthy; back up, it is judged afresh
            self.unhealthy[url] = None
            self._unhealthy_tries[url] = 0
        if was == up:
            return
        if up:
            log.info("worker %s: ComfyUI is reachable", url)
            if was is False:
                await self._emit(SchedulerEvent("worker_up", f"ComfyUI at {url} is back.", url))
        else:
            log.error("worker %s: %s; retrying every %g s", url, detail,
                      self.down_retry_seconds)
            await self._emit(SchedulerEvent("worker_down", detail, url))

    async def _set_unhealthy(self, url: str, err: ComfyUnhealthy) -> None:
        self._unhealthy_tries[url] += 1
        if self.unhealthy.get(url) is not None:
            return
        self.unhealthy[url] = str(err)
        log.error("worker %s: %s; following its job with growing pauses (up to %g s), and "
                  "cancelling a job that waits longer than %g s", url, err,
                  self.unhealthy_max_backoff, self.unhealthy_job_limit)
        await self._emit(SchedulerEvent("worker_unhealthy", str(err), url))

    async def _set_healthy(self, url: str) -> None:
        self._unhealthy_tries[url] = 0
        if self.unhealthy.get(url) is None:
            return
        self.unhealthy[url] = None
        log.info("worker %s: ComfyUI answers normally again", url)
        await self._emit(SchedulerEvent("worker_up", f"ComfyUI at {url} answers normally again.",
                                        url))

    def _backoff(self, url: str) -> float:
        tries = max(self._unhealthy_tries[url] - 1, 0)
        return float(min(self.down_retry_seconds * 2 ** min(tries, 30),
                         self.unhealthy_max_backoff))

    async def _release_in_hand(self, url: str, reason: str, *, unhealthy: bool = False) -> None:
        """After ComfyUI failed a worker: a job not yet on ComfyUI is cancelled (its place
        freed); one on ComfyUI is left to the next reconciliation, but no longer than
        `unhealthy_job_limit` while the server answers with errors."""
        job_id = self._in_hand.pop(url, None)
        if job_id is None:
            return
        async with self.sessions() as session, session.begin():
            job = await get_job(session, job_id)
            status, run_id = job.status, job.run_id
            if status is JobStatus.pending:
                await end_job(session, job_id, reason, JobStatus.cancelled)
        if status is JobStatus.pending:
            self._unhealthy_since.pop(job_id, None)
            self.wake()
            return
        if not unhealthy or status not in UNFINISHED:
            return
        now = time.monotonic()
        since = self._unhealthy_since.setdefault(job_id, now)
        if now - since < self.unhealthy_job_limit:
            return
        self._unhealthy_since.pop(job_id, None)
        why = f"ComfyUI kept failing for {self.unhealthy_job_limit:g} s: {reason}"
        async with self.sessions() as session, session.begin():
            await end_job(session, job_id, why, JobStatus.cancelled)
        _job_log(run_id, job_id).warning("cancelled: %s", why)
        self.wake()

    async def _end_in_hand_after_bug(self, url: str, err: Exception) -> None:
        """A job in hand when an unexpected error fired is ended: at once if it never reached
        ComfyUI, failed once it met such an error twice (else it would be retried forever)."""
        job_id = self._in_hand.pop(url, None)
        if job_id is None:
            return
        restarts = self._restarts[job_id] = self._restarts.get(job_id, 0) + 1
        detail = f"{type(err).__name__}: {err}"[:300]
        async with self.sessions() as session, session.begin():
            ctx = await job_context(session, job_id)
            if ctx.status is JobStatus.pending:
                await end_job(session, job_id, f"an internal error stopped the job before it "
                              f"reached ComfyUI ({detail}); see the log", JobStatus.cancelled)
        if ctx.status is JobStatus.pending:
            self._restarts.pop(job_id, None)
            self.wake()
            return
        if ctx.status in UNFINISHED and restarts >= RESTARTS_BEFORE_FAILING:
            self._restarts.pop(job_id, None)
            await self._fail(ctx, f"an internal error stopped the job {restarts} times "
                                  f"({detail}); see the log", url)

    # -- the data folder -----------------------------------------------------------------------

    async def _probe_storage(self) -> None:
        """While runs wait for the data folder, try a small write; once it works, lift their
        holds and say so."""
        if not self._storage_holds:
            return
        async with self.sessions() as session, session.begin():
            waiting = await held_runs(session, HoldKind.storage)
        if not waiting:
            self._storage_holds = False
            return
        try:
            await asyncio.to_thread(self._test_write)
        except OSError as err:
            log.debug("the data folder still cannot take files: %s", err)
            return
        async with self.sessions() as session, session.begin():
            lifted = await lift_holds(session, HoldKind.storage)
        self._storage_holds = False
        for run_id in lifted:
            log.info("run %d: the data folder takes files again; the run goes on", run_id)
            await self._emit(SchedulerEvent(
                "run_resumed", "the data folder takes files again", "", run_id,
                hold_kind=HoldKind.storage))
        if lifted:
            self.wake()

    def _test_write(self) -> None:
        probe = write_atomically(self.data_dir, f".write-test-{os.getpid()}", b"ok")
        probe.unlink(missing_ok=True)

    async def _storage_fault(self, ctx: JobContext, err: OSError, worker: str) -> None:
        code = err.errno or 0
        where = f" ({err.filename})" if err.filename else ""
        reason = f"the data folder cannot take files: {os.strerror(code)}{where}"
        jlog = _job_log(ctx.run_id, ctx.job_id)
        async with self.sessions() as session, session.begin():
            await end_job(session, ctx.job_id, reason, JobStatus.cancelled)
            made = await hold_for_storage(session, ctx.run_id, reason)
        self._storage_holds = True
        jlog.error("cancelled, and the run waits for the data folder: %s", reason)
        if made:
            await self._emit(SchedulerEvent("run_held", reason, worker, ctx.run_id, ctx.job_id,
                                            ctx.step, hold_kind=HoldKind.storage))
        self.wake()

    # -- one job -------------------------------------------------------------------------------

    async def _run(self, client: ComfyClient, claimed: ClaimedJob) -> None:
        """Take one job to its end. Every failure of the job's own ends it here (failed or
        cancelled); a ComfyUI outage, or a bug, reaches `_worker_loop` with the job in hand."""
        async with self.sessions() as session, session.begin():
            ctx = await job_context(session, claimed.job_id)
        self._in_hand[client.url] = ctx.job_id
        await self._submit(client, ctx)
        self._in_hand.pop(client.url, None)

    async def _submit(self, client: ComfyClient, ctx: JobContext) -> None:
        jlog = _job_log(ctx.run_id, ctx.job_id)
        prompt_id = uuid.uuid4().hex
        try:
            parent_image = await self._upload_parent(client, ctx)
        except ParentUnreadable as err:
            await self._reject_parent(ctx, err.what, client.url)
            return
        except OSError as err:
            await self._fail(ctx, f"the parent image could not be read: {err}", client.url)
            return
        except ComfyProtocolError as err:
            await self._fail(ctx, f"ComfyUI refused the parent image: {err}", client.url)
            return
        try:
            async with self.sessions() as session, session.begin():
                caps = self.capabilities.get(client.url)
                payload = await prepare_submission(
                    session, ctx.job_id, prompt_id=prompt_id, worker=client.url,
                    parent_image=parent_image, kinds=caps.kinds if caps else None)
            await client.submit(payload, prompt_id=prompt_id)
            self._next_sent[client.url].set()
        except DomainError as err:  # the workflow cannot be filled in for this job
            await self._fail(ctx, str(err), client.url)
            return
        except RecursionError:  # filling it in, or sending it
            await self._fail(ctx, TOO_DEEP, client.url)
            return
        except ComfyRejected as err:
            jlog.warning("ComfyUI refused the prompt: %s", err)
            await self._fail(ctx, str(err), client.url)
            return
        except ComfyProtocolError as err:
            await self._fail(ctx, f"ComfyUI did not take the prompt: {err}", client.url)
            return
        jlog.info("submitted to %s as %s", client.url, prompt_id)
        await self._follow(client, ctx, prompt_id, nodes=len(payload))

    async def _upload_parent(self, client: ComfyClient, ctx: JobContext) -> str | None:
        """Named by a hash of its bytes, so that two installations sharing a ComfyUI never
        load each other's parents, and bytes already there are not sent again."""
        if ctx.parent_path is None:
            return None
        data = await asyncio.to_thread(read_parent, self.data_dir / ctx.parent_path)
        name = f"cc-{hashlib.sha256(data).hexdigest()[:32]}{image_suffix(ctx.parent_path)}"
        if await client.input_exists(name, UPLOAD_SUBFOLDER):
            return f"{UPLOAD_SUBFOLDER}/{name}"
        return await client.upload_image(data, name, subfolder=UPLOAD_SUBFOLDER)

    async def _reject_parent(self, ctx: JobContext, what: str, worker: str) -> None:
        assert ctx.parent_id is not None
        _job_log(ctx.run_id, ctx.job_id).warning(
            "parent #%d rejected: its image file %s is %s", ctx.parent_id, ctx.parent_path, what)
        async with self.sessions() as session, session.begin():
            await reject_unreadable_parent(session, ctx.parent_id,
                                           f"{SCHEDULER}image file {what}")
        await self._fail(ctx, f"the image file of parent #{ctx.parent_id} ({ctx.parent_path}) "
                              f"is {what}; it is rejected as a parent", worker)

    async def _follow(
        self, client: ComfyClient, ctx: JobContext, prompt_id: str, *, running: bool = False,
        nodes: int = 0,
    ) -> None:
        if running:
            async with self.sessions() as session, session.begin():
                await mark_running(session, ctx.job_id)
        progress = JobProgress(ctx.job_id, ctx.run_id, ctx.step, client.url, nodes=nodes)
        self.progress[client.url] = progress
        marked = running

        async def on_progress(node: str, value: float, maximum: float) -> None:
            nonlocal marked
            progress.report(node, value, maximum)
            if not marked:
                marked = True
                async with self.sessions() as session, session.begin():
                    await mark_running(session, ctx.job_id)

        try:
            result = await client.follow(prompt_id, on_progress)
        finally:
            self.progress.pop(client.url, None)
        self._unhealthy_since.pop(ctx.job_id, None)
        await self._set_healthy(client.url)
        await self._finish(client, ctx, result)

    async def _finish(self, client: ComfyClient, ctx: JobContext, result: PromptResult) -> None:
        jlog = _job_log(ctx.run_id, ctx.job_id)
        if result.status in ("interrupted", "lost"):
            # Not the workflow's fault: the place is freed and the job made again, and it does
            # not count toward the failures that hold a run.
            reason = result.error or f"{result.status} on ComfyUI"
            async with self.sessions() as session, session.begin():
                await end_job(session, ctx.job_id, reason, JobStatus.cancelled)
            jlog.warning("cancelled: %s", reason)
            self.wake()
            return
        if result.status == "error":
            await self._fail(ctx, result.error or "ComfyUI reported an error", client.url)
            return
        images = result.saved_images
        if not images:
            await self._fail(ctx, "the workflow finished without saving an image", client.url)
            return
        stored: list[StoredImage] = []
        for index, image in enumerate(images):
            try:
                data = await client.download(image)
            except ComfyProtocolError as err:
                await self._fail(ctx, f"could not download an output: {err}", client.url)
                return
            except ComfyUnhealthy as err:
                if err.status is not None:
                    raise  # the server's trouble, not the output's: followed again later
                await self._fail(ctx, f"could not download an output in time "
                                      f"({err.detail}): {image.filename!r}", client.url)
                return
            suffix = image_suffix(image.filename)
            rel = image_relpath(ctx.run_folder, ctx.step_slug, ctx.job_id, index, suffix)
            try:
                await asyncio.to_thread(write_atomically, self.data_dir, rel, data)
            except OSError as err:
                if err.errno in STORAGE_ERRNOS:
                    await self._storage_fault(ctx, err, client.url)
                else:
                    await self._fail(ctx, f"could not store an output: {err}", client.url)
                return
            stored.append(StoredImage(rel, index))
        async with self.sessions() as session, session.begin():
            ids = await complete_job(session, ctx.job_id, stored)
        self.jobs_done += 1
        jlog.info("succeeded: %d image(s), candidate(s) %s", len(ids),
                  ", ".join(f"#{i}" for i in ids))
        self.wake()
        await self._emit(SchedulerEvent("job_succeeded", f"{len(ids)} new candidate(s)",
                                        client.url, ctx.run_id, ctx.job_id, ctx.step,
                                        tuple(ids), tuple(image.path for image in stored)))
        self._next_sent[client.url].clear()
        task = asyncio.create_task(
            self._make_thumbnails(client.url, [image.path for image in stored]),
            name=f"thumbnails of job {ctx.job_id}")
        self._thumbnailing.add(task)
        task.add_done_callback(self._thumbnailing.discard)

    async def _make_thumbnails(self, url: str, paths: Sequence[str]) -> None:
        """The sheet thumbnails of a job's new candidates, so /gallery stays quick: in a
        thread and a task of their own, once the worker has sent its next prompt."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._next_sent[url].wait(), THUMBNAILS_WAIT)
        try:
            await asyncio.to_thread(
                lambda: [make_thumbnail(self.data_dir / path) for path in paths])
        except Exception:  # a thumbnail is only a speed-up: the sheet makes a missing one
            log.exception("could not make the thumbnails of %s", ", ".join(paths))

    async def _fail(self, ctx: JobContext, error: str, worker: str) -> None:
        jlog = _job_log(ctx.run_id, ctx.job_id)
        jlog.warning("failed: %s", error)
        async with self.sessions() as session, session.begin():
            await end_job(session, ctx.job_id, error, JobStatus.failed)
            errors = await failure_streak(session, ctx.run_id, ctx.step, HOLD_AFTER_FAILURES)
            reason = None
            if errors:
                reason = (f"{HOLD_AFTER_FAILURES} jobs in a row failed at step {ctx.step}; "
                          f"the last error: {errors[0]}")
                try:
                    await hold_run(session, ctx.run_id, reason, HoldKind.failures)
                except DomainError:  # completed meanwhile: nothing to hold
                    reason = None
        await self._emit(SchedulerEvent("job_failed", error, worker, ctx.run_id, ctx.job_id,
                                        ctx.step))
        if reason:
            jlog.error("run put on hold: %s", reason)
            await self._emit(SchedulerEvent("run_held", reason, worker, ctx.run_id, ctx.job_id,
                                            ctx.step, hold_kind=HoldKind.failures))
        self.wake()

    # -- what each worker can run ---------------------------------------------------------------

    def problems_for_run(
        self, steps: Sequence[PipelineStep], variables: Mapping[str, Any]
    ) -> list[str]:
        """Why no worker could serve a run of these steps with these values ([] when one can,
        or when no worker has been read yet), for `create_run(check=...)`."""
        problems: list[str] = []
        for caps in self.capabilities.values():
            lacks = check_steps(steps, variables, caps)
            if not lacks:
                return []
            problems += lacks
        return problems

    async def _learn_capabilities(self, client: ComfyClient) -> None:
        """Read what the worker has, then hold the runs no connected worker can serve and lift
        such holds where one now can."""
        url = client.url
        self._capabilities_read[url] = time.monotonic()
        try:
            caps = await fetch_capabilities(client)
        except (ComfyUnavailable, ComfyUnhealthy):
            raise  # the worker is down or failing: the loop says so and waits
        except ComfyError as err:
            log.warning("worker %s: could not read its nodes and models (%s); its jobs are not "
                        "checked before they are sent", url, err)
            return
        self.capabilities[url] = caps
        self._unfit = {key: lacks for key, lacks in self._unfit.items() if key[1] != url}
        await self._review_runs()

    async def _judge(self, run_id: int) -> None:
        """Check one run against every worker read but not yet checked for it.

        A workflow too deep to load or check is left to the job path, which fails its jobs
        with the reason (and holds the run after three)."""
        try:
            async with self.sessions() as session, session.begin():
                run = await session.get(PipelineRun, run_id)
                if run is None:
                    return
                steps = list(await session.scalars(
                    select(PipelineStep).where(PipelineStep.pipeline_id == run.pipeline_id)
                    .order_by(PipelineStep.position)))
                variables = dict(run.variables)
            verdicts = {url: check_steps(steps, variables, caps)
                        for url, caps in self.capabilities.items()
                        if (run_id, url) not in self._unfit}
        except RecursionError:
            log.warning("run %d: its workflow is nested too deeply to check against the "
                        "workers", run_id)
            verdicts = {url: [] for url in self.capabilities}
        for url, lacks in verdicts.items():
            self._unfit.setdefault((run_id, url), lacks)

    async def _runs_it_cannot_serve(self, url: str) -> frozenset[int]:
        if url not in self.capabilities:
            return frozenset()
        async with self.sessions() as session, session.begin():
            run_ids = list(await session.scalars(select(PipelineRun.id).where(
                PipelineRun.status == RunStatus.running, PipelineRun.held_reason.is_(None))))
        for run_id in run_ids:
            if (run_id, url) not in self._unfit:
                await self._judge(run_id)
        return frozenset(r for r in run_ids if self._unfit.get((r, url)))

    async def _review_runs(self) -> None:
        connected = [u for u in self.workers if self.up.get(u) and u in self.capabilities]
        if not connected:
            return
        async with self.sessions() as session, session.begin():
            runs = (await session.execute(
                select(PipelineRun.id, PipelineRun.held_reason, PipelineRun.held_kind)
                .where(PipelineRun.status == RunStatus.running))).all()
        for run_id, held_reason, held_kind in runs:
            if held_reason is not None and held_kind is not HoldKind.workers:
                continue  # held for another reason: a person or a write lifts it
            await self._judge(run_id)
            lacks = {u: self._unfit.get((run_id, u), []) for u in connected}
            if any(not problems for problems in lacks.values()):
                if held_kind is HoldKind.workers:
                    async with self.sessions() as session, session.begin():
                        lifted = await lift_holds(session, HoldKind.workers, [run_id])
                    if lifted:
                        able = next(u for u, problems in lacks.items() if not problems)
                        log.info("run %d: %s can serve it; hold lifted", run_id, able)
                        self.wake()
                        await self._emit(SchedulerEvent(
                            "run_resumed", f"ComfyUI at {able} has what it needs", able,
                            run_id, hold_kind=HoldKind.workers))
                continue
            if held_reason is not None:
                continue
            reason = ("no connected ComfyUI can run it; it goes on by itself once one can:\n"
                      + problem_lines([p for problems in lacks.values() for p in problems]))
            async with self.sessions() as session, session.begin():
                try:
                    await hold_run(session, run_id, reason, HoldKind.workers)
                except DomainError:  # completed meanwhile
                    continue
            log.warning("run %d held: %s", run_id, reason)
            await self._emit(SchedulerEvent("run_held", reason, connected[-1], run_id,
                                            hold_kind=HoldKind.workers))

    # -- recovery ------------------------------------------------------------------------------

    async def _reconcile(self, client: ComfyClient) -> None:
        """Settle every job this worker left submitted or running (docs/operations.md,
        "Start-up")."""
        async with self.sessions() as session, session.begin():
            left = await unfinished_jobs(session)
        for job_id in [job.job_id for job in left if job.worker == client.url]:
            async with self.sessions() as session, session.begin():
                ctx = await job_context(session, job_id)
            self._in_hand[client.url] = job_id
            await self._recover(client, ctx)
            self._in_hand.pop(client.url, None)

    async def _recover(self, client: ComfyClient, ctx: JobContext) -> None:
        jlog = _job_log(ctx.run_id, ctx.job_id)
        if ctx.prompt_id is None:  # cannot happen: the id is stored with the status
            await self._fail(ctx, "no prompt id was recorded", client.url)
            return
        found = await client.locate(ctx.prompt_id)
        if found in ("running", "pending"):
            running = found == "running"
            jlog.info("recovered: still %s on ComfyUI; following it",
                      "running" if running else "queued")
            await self._follow(client, ctx, ctx.prompt_id, running=running)
        elif isinstance(found, PromptResult) and found.status != "lost":
            jlog.info("recovered: finished on ComfyUI while we were away")
            await self._finish(client, ctx, found)
        else:
            jlog.warning("ComfyUI no longer knows prompt %s; the job will be made again",
                         ctx.prompt_id)
            async with self.sessions() as session, session.begin():
                await end_job(session, ctx.job_id,
                              f"ComfyUI at {client.url} no longer knew the prompt",
                              JobStatus.cancelled)

    async def _release_orphans(self) -> None:
        """Jobs left on a worker that is no longer configured cannot be followed."""
        async with self.sessions() as session, session.begin():
            for job in await unfinished_jobs(session):
                if job.worker in self.workers:
                    continue
                log.warning("job %d: worker %s is no longer in COMFY_URL; the job is released "
                            "and will be made again", job.job_id, job.worker)
                await end_job(session, job.job_id,
                              f"worker {job.worker} is no longer in COMFY_URL",
                              JobStatus.cancelled)

    async def _emit(self, event: SchedulerEvent) -> None:
        if self.on_event is None:
            return
        try:
            await self.on_event(event)
        except Exception:
            log.exception("event handler failed for %s", event.kind)
