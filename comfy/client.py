"""Async client for one ComfyUI server: submit prompts, follow them to their end, fetch images.

Following a prompt uses the server's websocket (`/ws?clientId=`) for prompt progress and the end
signal, and `GET /history/{id}` as the source of truth: the socket is opened before a prompt is
submitted so a fast prompt cannot finish unseen, history is asked at the start of every follow (a
prompt may have ended before anyone listened) and polled while the socket is down, or up but
silent about a running prompt for `silence_after` seconds. Only frames that name a prompt count
for it; frames naming none are ignored.

Every HTTP call is retried with exponential backoff (tenacity) on connection errors, timeouts and
5xx. What is left is `ComfyUnavailable` when no answer could be had at all (refused, host
unknown, no connection, dropped before answering), `ComfyUnhealthy` when the server answered 5xx
or kept the request past its timeout (it quotes ComfyUI's text). A 4xx is never retried. Small
calls have `request_timeout`, POST /prompt `submit_timeout`, downloads `download_timeout` (not
retried once run out).

Submissions carry a client-chosen `prompt_id` (ComfyUI honours it). Before any resend the client
asks whether the server knows the id; after a POST that got no answer in time it keeps asking for
`submit_grace` seconds, since a busy server may still be handling it. A 500 from POST /prompt is
ComfyUI failing on this very body (it answers so when its handler raises), so it is sent once
more only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import logging
import mimetypes
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias, TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from yarl import URL

from comfy.errors import (
    ComfyError,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnavailable,
    ComfyUnhealthy,
)

__all__ = [
    "ComfyClient",
    "OutputImage",
    "ProgressCallback",
    "PromptResult",
    "PromptStatus",
    "QueueState",
    "describe_execution_error",
    "parse_history_entry",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# "lost": the server no longer knows the prompt (deleted, or it restarted and lost its queue).
PromptStatus: TypeAlias = Literal["success", "error", "interrupted", "lost"]
ProgressCallback: TypeAlias = Callable[[str, float, float], Awaitable[None] | None]
"""Called with (node id, value, max) whenever a node's progress changes; may be async."""


@dataclass(frozen=True)
class OutputImage:
    """One file a prompt wrote, as ComfyUI names it in history and /view."""

    node_id: str
    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class PromptResult:
    """How a prompt ended. `error` is one readable line (no traceback) unless it succeeded."""

    prompt_id: str
    status: PromptStatus
    images: list[OutputImage] = field(default_factory=list)
    error: str | None = None

    @property
    def saved_images(self) -> list[OutputImage]:
        """Only the files in the output folder (SaveImage), not temporary previews."""
        return [image for image in self.images if image.type == "output"]


@dataclass(frozen=True)
class QueueState:
    """Prompt ids ComfyUI is running and has waiting, in the order it will run them."""

    running: list[str]
    pending: list[str]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


# ---------------------------------------------------------------------------------------------
# Parsing: pure functions over ComfyUI's JSON, shared by the websocket and the history paths.


def describe_execution_error(data: Mapping[str, Any]) -> str:
    """'node 5 (ImageBlur): RuntimeError: …' from an execution_error payload, without traceback."""
    node = data.get("node_id")
    node_type = data.get("node_type")
    exc_type = str(data.get("exception_type") or "error")
    message = str(data.get("exception_message") or "").strip()
    where = f"node {node} ({node_type})" if node_type else f"node {node}"
    return f"{where}: {exc_type}: {message}" if message else f"{where}: {exc_type}"


def _describe_interrupt(data: Mapping[str, Any]) -> str:
    node = data.get("node_id")
    node_type = data.get("node_type")
    if node is None:
        return "interrupted"
    return f"interrupted at node {node}" + (f" ({node_type})" if node_type else "")


def _images_from_output(node_id: str, output: Any) -> list[OutputImage]:
    if not isinstance(output, Mapping):
        return []
    items = output.get("images")
    if not isinstance(items, list):
        return []
    images = []
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
            images.append(
                OutputImage(
                    node_id=node_id,
                    filename=item["filename"],
                    subfolder=str(item.get("subfolder") or ""),
                    type=str(item.get("type") or "output"),
                )
            )
    return images


def parse_history_entry(prompt_id: str, entry: Any) -> PromptResult:
    """Turn one `/history` entry into a PromptResult.

    An entry exists only once the prompt has ended. ComfyUI marks an interrupted prompt with
    status_str "error", so the kind of ending is read from the status messages.
    """
    if not isinstance(entry, Mapping):
        raise ComfyProtocolError(f"history entry for {prompt_id} is not an object", body=entry)
    outputs = entry.get("outputs") or {}
    if not isinstance(outputs, Mapping):
        raise ComfyProtocolError(f"history outputs for {prompt_id} are not an object", body=entry)
    images = [img for node, out in outputs.items() for img in _images_from_output(str(node), out)]

    status = entry.get("status")
    if status is None:  # servers from before 2024 wrote no status: an entry meant it ran
        return PromptResult(prompt_id, "success", images)
    if not isinstance(status, Mapping):
        raise ComfyProtocolError(f"history status for {prompt_id} is not an object", body=entry)
    messages = status.get("messages") or []
    ending: tuple[str, Mapping[str, Any]] | None = None
    for message in messages if isinstance(messages, list) else []:
        if (
            isinstance(message, list)
            and len(message) == 2
            and message[0] in ("execution_error", "execution_interrupted")
            and isinstance(message[1], Mapping)
        ):
            ending = (message[0], message[1])
    status_str = status.get("status_str")
    if ending and ending[0] == "execution_interrupted":
        return PromptResult(prompt_id, "interrupted", images, _describe_interrupt(ending[1]))
    if ending:
        return PromptResult(prompt_id, "error", images, describe_execution_error(ending[1]))
    if status_str == "success" or (status_str is None and status.get("completed") is True):
        return PromptResult(prompt_id, "success", images)
    if status_str == "error":
        return PromptResult(prompt_id, "error", images, "ComfyUI reported an error without details")
    raise ComfyProtocolError(f"history status for {prompt_id} is not understood", body=entry)


def _parse_queue(body: Any) -> QueueState:
    if not isinstance(body, Mapping):
        raise ComfyProtocolError("GET /queue did not answer an object", body=body)

    def ids(key: str) -> list[str]:
        items = body.get(key)
        if not isinstance(items, list):
            raise ComfyProtocolError(f"GET /queue has no list {key!r}", body=body)
        rows = []
        for item in items:
            if not isinstance(item, list) or len(item) < 2 or not isinstance(item[1], str):
                raise ComfyProtocolError(f"GET /queue: an item of {key!r} has no prompt id",
                                         body=body)
            number = item[0] if isinstance(item[0], int | float) else 0
            rows.append((number, item[1]))
        # ComfyUI keeps pending prompts in a heap; the list it sends is not in run order.
        return [pid for _, pid in sorted(rows, key=lambda row: row[0])]

    return QueueState(running=ids("queue_running"), pending=ids("queue_pending"))


# ---------------------------------------------------------------------------------------------
# Transport helpers.


class _ServerError(Exception):
    """A 5xx answer, raised inside a retry attempt so it is retried."""

    def __init__(self, status: int, reason: str | None, text: str) -> None:
        super().__init__(f"HTTP {status} {reason or ''}".strip())
        self.status = status
        self.reason = reason or ""
        self.text = text


def _one_line(body: bytes | str, limit: int = 200) -> str:
    """ComfyUI's answer as one line of at most `limit` characters, for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise ComfyProtocolError(f"{what}: the answer is not JSON", status=self.status,
                                     body=self.body[:200]) from err


_TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError, _ServerError)
_WS_TRANSIENT = (*_TRANSIENT, aiohttp.WSServerHandshakeError)


def _is_transient(err: BaseException) -> bool:
    return isinstance(err, _TRANSIENT)


def _is_ws_transient(err: BaseException) -> bool:
    return isinstance(err, _WS_TRANSIENT)


def _no_answer_in_time(err: BaseException) -> bool:
    """Connected, sent, and waited the whole timeout: the server is there but too slow."""
    return isinstance(err, TimeoutError) and not isinstance(err, aiohttp.ConnectionTimeoutError)


def _short_cause(err: BaseException, timeout: float, connect_timeout: float) -> str:
    """A few words for an error message: what a person can check on the GPU box."""
    if isinstance(err, _ServerError):
        return str(err)
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return "host name not found"
    if isinstance(err, aiohttp.ClientConnectorError):
        if err.os_error.errno == errno.ECONNREFUSED or isinstance(
            err.os_error, ConnectionRefusedError
        ):
            return "connection refused"
        return err.strerror or str(err.os_error) or "cannot connect"
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return f"no connection within {connect_timeout:g} s"
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    return str(err) or type(err).__name__


def _may_have_arrived(err: BaseException) -> bool:
    """Whether a failed POST could still have reached the server (so it may be queued)."""
    return not isinstance(err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


@dataclass
class _Event:
    kind: str
    data: Mapping[str, Any]


_LINK = "_link"  # synthetic event: the websocket went up or down, frames may have been missed
_CLOSED = "_closed"  # synthetic event: the client is closing
_ENDINGS = frozenset({"execution_success", "execution_error", "execution_interrupted"})


class _Tracker:
    """Frames for one prompt id, buffered until someone follows it."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self.followers = 0


# ---------------------------------------------------------------------------------------------


class ComfyClient:
    """One ComfyUI server. Use as `async with ComfyClient(url) as comfy: ...`.

    Owns one aiohttp session and, once a prompt is submitted or followed, one websocket that is
    reconnected in the background when it drops.
    """

    _MAX_TRACKERS = 1000

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        retry_attempts: int = 4,
        retry_wait: float = 0.5,
        retry_max_wait: float = 8.0,
        request_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        submit_timeout: float = 120.0,
        submit_grace: float = 30.0,
        download_timeout: float = 300.0,
        poll_interval: float = 1.0,
        idle_poll_interval: float = 15.0,
        silence_after: float = 5.0,
        history_grace: float = 5.0,
        ws_heartbeat: float | None = 20.0,
    ) -> None:
        """
        retry_attempts: tries per HTTP call before giving up (1 = no retry).
        retry_wait / retry_max_wait: first and largest backoff in seconds (tests use ~0.01).
        request_timeout: for one small call (queue, history, upload, ...).
        submit_timeout: for POST /prompt, which a busy server can take long to answer.
        submit_grace: after a POST /prompt without an answer in time, how long to keep asking
            whether the server queued it before sending it again.
        download_timeout: for one GET /view, body included.
        poll_interval: how often history is polled while the websocket is down, or up but
            silent about a running prompt.
        idle_poll_interval: how often history is checked while frames about the prompt arrive
            (covers a server restart that forgot the prompt).
        silence_after: seconds without a frame about a followed prompt before history is
            polled every poll_interval instead.
        history_grace: after an end frame, how long to wait for the history entry before
            building the result from the frames alone.
        """
        url = URL(base_url.strip().rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL for ComfyUI: {base_url!r}")
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        self._base = url
        self._client_id = client_id or uuid.uuid4().hex
        self._retry_attempts = retry_attempts
        self._retry_wait = retry_wait
        self._retry_max_wait = retry_max_wait
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, connect=connect_timeout)
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._submit_timeout = submit_timeout
        self._submit_grace = submit_grace
        self._download_timeout = download_timeout
        self._poll_interval = poll_interval
        self._silence_after = silence_after
        self._idle_poll_interval = idle_poll_interval
        self._history_grace = history_grace
        self._ws_heartbeat = ws_heartbeat
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._listener: asyncio.Task[None] | None = None
        self._ws_up = asyncio.Event()
        self._ws_settled = asyncio.Event()  # first connection attempt done, either way
        self._trackers: OrderedDict[str, _Tracker] = OrderedDict()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the websocket, wake any follower, close the session."""
        self._closed = True
        for tracker in self._trackers.values():
            tracker.events.put_nowait(_Event(_CLOSED, {}))
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def url(self) -> str:
        """The server's base URL, as used in error messages."""
        return str(self._base)

    @property
    def client_id(self) -> str:
        """The id this client gives ComfyUI; frames of its prompts go to this socket."""
        return self._client_id

    @property
    def connected(self) -> bool:
        """Whether the websocket is open right now."""
        return self._ws_up.is_set()

    async def connect(self, *, within: float | None = None) -> bool:
        """Open the websocket (if not open) and wait for the first attempt to settle.

        Returns whether the socket is up. Not required before `submit` (which does it), but it
        lets a caller learn early that the server is reachable.
        """
        self._start_listener()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._ws_settled.wait(), within if within is not None else self._connect_timeout
            )
        return self.connected

    # -- REST ----------------------------------------------------------------------------------

    async def submit(self, workflow: Mapping[str, Any], *, prompt_id: str | None = None) -> str:
        """Queue an API-format workflow; returns its prompt id.

        `prompt_id` may be chosen by the caller (store it before submitting and a crash between
        the two cannot lose the prompt). Raises ComfyRejected on 400.
        """
        pid = prompt_id or str(uuid.uuid4())
        if "/" in pid or not pid.strip():
            raise ValueError(f"a prompt id must be a non-empty name without '/': {pid!r}")
        await self.connect()  # listen first: a fast prompt must not end before we hear it
        self._tracker(pid)
        body = {"prompt": dict(workflow), "client_id": self._client_id, "prompt_id": pid}
        answer = await self._post_prompt(pid, body)
        if answer is None:
            return pid
        if answer.status == 400:
            try:
                raw: Any = json.loads(answer.body)
            except ValueError:
                raw = answer.body.decode("utf-8", "replace")
            self._forget(pid)
            raise ComfyRejected(raw, status=400)
        if answer.status != 200:
            self._forget(pid)
            raise self._unexpected("POST /prompt", answer)
        data = answer.json("POST /prompt")
        if not isinstance(data, Mapping) or not isinstance(data.get("prompt_id"), str):
            raise ComfyProtocolError("POST /prompt answered without a prompt_id", body=data)
        if data.get("node_errors"):
            # ComfyUI runs the outputs that validated and reports the others here.
            log.warning("prompt %s queued, but some outputs were dropped: %s",
                        data["prompt_id"], "; ".join(ComfyRejected(data).reasons))
        accepted: str = data["prompt_id"]
        if accepted != pid:  # an older server that chooses its own ids
            self._forget(pid)
            self._tracker(accepted)
        return accepted

    async def _post_prompt(self, pid: str, body: Mapping[str, Any]) -> _Answer | None:
        """POST /prompt with retries, never queueing `pid` twice; None if already queued.

        Before any resend the server is asked whether it knows the id. After a POST that got
        no answer in time the server may still be handling it, so it is asked again for up to
        `submit_grace` seconds before the prompt is sent again. A 500 means ComfyUI failed on
        this very body, so it is tried once more only.
        """
        what = "POST /prompt"
        attempts = self._retry_attempts
        attempt = 0
        maybe_queued = in_flight = False
        while True:
            attempt += 1
            try:
                if maybe_queued and await self._known_after(pid, wait=in_flight):
                    log.info("prompt %s was queued by an earlier attempt; not sending it again",
                             pid)
                    return None
                in_flight = False
                try:
                    return await self._send("POST", "/prompt", json=body,
                                            within=self._submit_timeout)
                except _TRANSIENT as err:
                    maybe_queued = maybe_queued or _may_have_arrived(err)
                    in_flight = _no_answer_in_time(err)
                    if isinstance(err, _ServerError) and err.status == 500:
                        attempts = min(attempts, 2)
                    raise
            except _TRANSIENT as err:
                failure = err
                if attempt >= attempts:
                    break
                self._log_retry(err, self._submit_timeout, attempt, attempts)
                await asyncio.sleep(self._backoff(attempt))
        if maybe_queued:  # the last attempt may yet have been queued: look once more
            with contextlib.suppress(*_TRANSIENT):
                if await self._known_after(pid, wait=in_flight):
                    log.info("prompt %s was queued by the last attempt after all", pid)
                    return None
        error = self._give_up(what, failure, self._submit_timeout)
        if isinstance(error, ComfyUnhealthy) and error.status == 500:
            error = ComfyUnhealthy(self.url, what, f"{error.detail} (see ComfyUI's log for why)",
                                   status=500)
        raise error from failure

    async def _known_after(self, pid: str, *, wait: bool) -> bool:
        """Whether the server knows `pid`; with `wait`, keep asking for up to submit_grace."""
        if not wait:
            return await self._known(pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._submit_grace
        log.info("POST /prompt to %s got no answer within %g s; waiting up to %g s for prompt %s "
                 "to show up before sending it again", self.url, self._submit_timeout,
                 self._submit_grace, pid)
        while True:
            if await self._known(pid):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(self._poll_interval, remaining))

    async def history(self, prompt_id: str) -> PromptResult | None:
        """How the prompt ended, or None while it is queued, running or unknown to the server."""
        what = f"GET /history/{prompt_id}"
        answer = await self._retrying(what, lambda: self._send("GET", f"/history/{prompt_id}"))
        return self._parse_history(prompt_id, answer)

    async def delete_history(self, prompt_ids: Sequence[str]) -> None:
        """Remove these prompts' entries from ComfyUI's history (`POST /history` with
        `delete`); ids it does not have are ignored. The output files stay: no route of
        ComfyUI deletes them."""
        if not prompt_ids:
            return
        body = {"delete": list(prompt_ids)}
        answer = await self._retrying(
            "POST /history", lambda: self._send("POST", "/history", json=body))
        if answer.status != 200:
            raise self._unexpected("POST /history", answer)

    async def download(self, image: OutputImage) -> bytes:
        """The bytes of one output file (`GET /view`), within `download_timeout`.

        A download that runs out of time is not started over (it would likely run out again);
        it raises ComfyUnhealthy naming the file. A file the server does not have is a
        ComfyProtocolError with status 404.
        """
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        where = f"{image.subfolder}/{image.filename}" if image.subfolder else image.filename
        seconds = self._download_timeout
        answer = await self._retrying(
            f"GET /view {where}",
            lambda: self._send("GET", "/view", params=params, within=seconds),
            within=seconds, retry_timeouts=False,
            timed_out=f"the download did not finish within {seconds:g} s",
        )
        if answer.status == 200:
            return answer.body
        if answer.status == 404:
            raise ComfyProtocolError(
                f"{image.type} file {where} is not on ComfyUI at {self.url}", status=404
            )
        raise ComfyProtocolError(
            f"GET /view {where} answered HTTP {answer.status}", status=answer.status
        )

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", overwrite: bool = True
    ) -> str:
        """Upload into ComfyUI's input folder; returns the value for LoadImage's `image` input.

        That is `subfolder/name` when there is a subfolder. The name is the server's answer,
        which differs from `filename` when overwrite is off and the name was taken.
        """
        if not filename or "/" in filename or "\\" in filename:
            raise ValueError(f"upload filename must be a plain file name: {filename!r}")
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"

        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData()
            fd.add_field("image", data, filename=filename, content_type=content_type)
            fd.add_field("subfolder", subfolder)
            fd.add_field("overwrite", "true" if overwrite else "false")
            fd.add_field("type", "input")
            return fd

        answer = await self._retrying(
            "POST /upload/image", lambda: self._send("POST", "/upload/image", data=form()))
        if answer.status != 200:
            raise self._unexpected("POST /upload/image", answer)
        body = answer.json("POST /upload/image")
        if not isinstance(body, Mapping) or not isinstance(body.get("name"), str):
            raise ComfyProtocolError("POST /upload/image answered without a name", body=body)
        folder = str(body.get("subfolder") or "").strip("/")
        name: str = body["name"]
        return f"{folder}/{name}" if folder else name

    async def input_exists(self, filename: str, subfolder: str = "") -> bool:
        """Whether the input folder has this file (`HEAD /view?type=input`; ComfyUI answers
        404 for a file that is not there). Lets a caller skip uploading bytes it named by
        their hash."""
        params = {"filename": filename, "subfolder": subfolder, "type": "input"}
        answer = await self._retrying(f"HEAD /view {filename}",
                                      lambda: self._send("HEAD", "/view", params=params))
        if answer.status == 200:
            return True
        if answer.status == 404:
            return False
        raise self._unexpected(f"HEAD /view {filename}", answer)

    async def queue(self) -> QueueState:
        """What ComfyUI is running and has waiting (`GET /queue`)."""
        answer = await self._retrying("GET /queue", lambda: self._send("GET", "/queue"))
        if answer.status != 200:
            raise self._unexpected("GET /queue", answer)
        return _parse_queue(answer.json("GET /queue"))

    async def system_stats(self) -> dict[str, Any]:
        """`GET /system_stats`: versions, RAM and devices; a cheap health check."""
        return await self._get_object("/system_stats")

    async def _get_object(self, path: str) -> dict[str, Any]:
        """GET a path that answers one JSON object; anything else is a protocol error."""
        what = f"GET {path}"
        answer = await self._retrying(what, lambda: self._send("GET", path))
        if answer.status != 200:
            raise self._unexpected(what, answer)
        body = answer.json(what)
        if not isinstance(body, dict):
            raise ComfyProtocolError(f"{what} did not answer an object", body=body)
        return body

    # -- following -----------------------------------------------------------------------------

    async def follow(
        self, prompt_id: str, on_progress: ProgressCallback | None = None
    ) -> PromptResult:
        """Wait for a submitted prompt to end and say how it ended.

        Works for a prompt submitted by an earlier process too (after a restart): history is
        asked first. A prompt the server no longer knows (deleted, or the server restarted and
        lost its queue) ends as status "lost". Raises ComfyUnavailable if the server stays
        unreachable through a whole retry cycle, ComfyUnhealthy if it keeps failing to answer.
        """
        self._start_listener()
        tracker = self._tracker(prompt_id)
        tracker.followers += 1
        try:
            return await self._follow(prompt_id, tracker, on_progress)
        finally:
            tracker.followers -= 1
            if tracker.followers == 0:
                self._forget(prompt_id)

    # -- what the server has -------------------------------------------------------------------

    async def object_info(self) -> dict[str, Any]:
        """`GET /object_info`: every node class with its inputs (dropdown choices included)."""
        return await self._get_object("/object_info")

    async def models(self, folder: str) -> list[str] | None:
        """`GET /models/<folder>`: the model files there; None when the server has no such
        folder (it answers 404)."""
        path = f"/models/{folder}"
        answer = await self._retrying(f"GET {path}", lambda: self._send("GET", path))
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise self._unexpected(f"GET {path}", answer)
        body = answer.json(f"GET {path}")
        if not isinstance(body, list):
            raise ComfyProtocolError(f"GET {path} did not answer a list", body=body)
        return [str(name) for name in body]

    async def _follow(
        self, prompt_id: str, tracker: _Tracker, on_progress: ProgressCallback | None
    ) -> PromptResult:
        loop = asyncio.get_running_loop()
        reported: dict[str, tuple[float, float]] = {}
        frame_images: list[OutputImage] = []
        check_history = True
        heard = loop.time()  # the last frame about this prompt, or when silence was expected
        silent = False  # the socket is up but says nothing about this running prompt
        noticed = False
        while True:
            if check_history:
                check_history = False
                found = await self.locate(prompt_id)
                if isinstance(found, PromptResult):
                    return found
                if found == "pending":
                    heard = loop.time()  # no frames until it runs: nothing is missing
                elif (self.connected and not silent
                      and loop.time() - heard >= self._silence_after - 0.001):
                    silent = True
                    log.log(logging.DEBUG if noticed else logging.INFO,
                            "no websocket frame about prompt %s from %s for %g s although it "
                            "runs; checking its history every %g s", prompt_id, self.url,
                            self._silence_after, self._poll_interval)
                    noticed = True
            if silent or not self.connected:
                wait = self._poll_interval
            else:
                wait = min(self._idle_poll_interval, heard + self._silence_after - loop.time())
            try:
                event = await asyncio.wait_for(tracker.events.get(), max(wait, 0.0))
            except TimeoutError:
                check_history = True
                continue
            if event.kind == _CLOSED:
                raise ComfyError(
                    f"the client for {self.url} was closed while following {prompt_id}")
            heard = loop.time()
            if event.kind == _LINK:
                check_history = True  # frames may have been lost while the socket was down
                continue
            if silent:
                silent = False
                log.debug("frames about %s resumed; following the websocket again", prompt_id)
            if event.kind == "progress":
                await self._report(on_progress, reported, event.data.get("node"), event.data)
            elif event.kind == "progress_state":
                nodes = event.data.get("nodes")
                for node, state in (nodes.items() if isinstance(nodes, Mapping) else []):
                    if isinstance(state, Mapping):
                        await self._report(on_progress, reported, node, state)
            elif event.kind == "executed":
                frame_images.extend(
                    _images_from_output(str(event.data.get("node")), event.data.get("output"))
                )
            elif event.kind in _ENDINGS or (
                event.kind == "executing" and event.data.get("node") is None
            ):
                return await self._finish(prompt_id, tracker, event, frame_images)

    async def locate(self, prompt_id: str) -> PromptResult | Literal["running", "pending"]:
        """How the prompt ended, else where it is in the queue; a "lost" result if the server
        knows it nowhere (history is asked again after the queue: it may have just ended)."""
        result = await self.history(prompt_id)
        if result is not None:
            return result
        queue = await self.queue()
        if prompt_id in queue.running:
            return "running"
        if prompt_id in queue.pending:
            return "pending"
        # Not in the queue: it may have ended between the two calls, or be gone for good.
        result = await self.history(prompt_id)
        if result is not None:
            return result
        log.warning("prompt %s is in neither the queue nor the history of %s", prompt_id, self.url)
        return PromptResult(
            prompt_id, "lost", [],
            f"ComfyUI at {self.url} no longer knows prompt {prompt_id} "
            "(it was deleted from the queue, or the server restarted)",
        )

    async def _finish(
        self, prompt_id: str, tracker: _Tracker, end: _Event, frame_images: list[OutputImage]
    ) -> PromptResult:
        """After an end frame: prefer the history entry, which ComfyUI writes just after it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._history_grace
        delay = 0.01
        while True:
            try:
                result = await self.history(prompt_id)
            except (ComfyUnavailable, ComfyUnhealthy) as err:
                log.warning("history of %s unavailable after its end frame: %s", prompt_id, err)
                break
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # The end-of-prompt `executing` frame (node null) follows the history write.
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(tracker.events.get(), min(delay, remaining))
                if event.kind == _CLOSED:
                    break
            delay = min(delay * 2, 0.5)
        log.info("building the result of %s from websocket frames (no history entry)", prompt_id)
        if end.kind == "execution_error":
            error = describe_execution_error(end.data)
            return PromptResult(prompt_id, "error", frame_images, error)
        if end.kind == "execution_interrupted":
            error = _describe_interrupt(end.data)
            return PromptResult(prompt_id, "interrupted", frame_images, error)
        return PromptResult(prompt_id, "success", frame_images)

    @staticmethod
    async def _report(
        callback: ProgressCallback | None,
        reported: dict[str, tuple[float, float]],
        node_id: Any,
        data: Mapping[str, Any],
    ) -> None:
        """Call back once per change of a node's (value, max); frames repeat unchanged nodes."""
        raw_value, raw_top = data.get("value"), data.get("max")
        if node_id is None or not isinstance(raw_value, int | float):
            return
        if not isinstance(raw_top, int | float):
            return
        node, value, top = str(node_id), float(raw_value), float(raw_top)
        if reported.get(node) == (value, top):
            return
        reported[node] = (value, top)
        if callback is None:
            return
        try:
            outcome = callback(node, value, top)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # a failing progress display must not fail the job
            log.exception("progress callback failed")

    # -- websocket -----------------------------------------------------------------------------

    def _start_listener(self) -> None:
        if self._closed:
            raise ComfyError(f"the client for {self.url} is closed")
        if self._listener is None or self._listener.done():
            self._ws_settled.clear()
            self._listener = asyncio.create_task(self._listen(), name=f"comfy-ws {self.url}")

    def _ws_url(self) -> URL:
        scheme = "wss" if self._base.scheme == "https" else "ws"
        path = self._base.path.rstrip("/") + "/ws"
        return self._base.with_scheme(scheme).with_path(path).with_query(clientId=self._client_id)

    async def _listen(self) -> None:
        """Keep one websocket open; reconnect with backoff; dispatch frames to trackers."""
        session = self._ensure_session()

        def gave_up_once(state: RetryCallState) -> None:
            self._ws_settled.set()
            if state.attempt_number == 1:
                log.warning("websocket to %s is down; polling history until it is back", self.url)

        while not self._closed:
            retrying = AsyncRetrying(
                retry=retry_if_exception(_is_ws_transient),
                wait=wait_exponential(multiplier=self._retry_wait, max=self._retry_max_wait),
                before_sleep=gave_up_once,
                reraise=True,
            )
            ws: aiohttp.ClientWebSocketResponse[bool] | None = None
            try:
                async for attempt in retrying:
                    with attempt:
                        ws = await session.ws_connect(
                            self._ws_url(),
                            heartbeat=self._ws_heartbeat,
                            max_msg_size=0,
                            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                        )
            except Exception:  # pragma: no cover - only non-transient errors reach here
                log.exception("websocket to %s failed; following by polling only", self.url)
                self._ws_settled.set()
                return
            assert ws is not None
            opened = asyncio.get_running_loop().time()
            self._link(up=True)
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self._dispatch(msg.data)
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        break
                    # Binary frames are previews: not needed to follow a prompt.
            except (aiohttp.ClientError, OSError, TimeoutError) as err:
                log.debug("websocket to %s failed: %r", self.url, err)
            finally:
                self._link(up=False)
                await ws.close()
            if not self._closed:
                log.info("websocket to %s closed; reconnecting", self.url)
                if asyncio.get_running_loop().time() - opened < 1.0:
                    await asyncio.sleep(self._retry_wait)  # a server that closes at once

    def _link(self, *, up: bool) -> None:
        if up:
            self._ws_up.set()
            self._ws_settled.set()
            log.debug("websocket to %s is up", self.url)
        else:
            self._ws_up.clear()
        for tracker in self._trackers.values():
            if tracker.followers:
                tracker.events.put_nowait(_Event(_LINK, {"up": up}))

    def _dispatch(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            log.debug("ignoring a websocket frame that is not JSON: %.80r", text)
            return
        if not isinstance(message, Mapping) or not isinstance(message.get("type"), str):
            return
        kind: str = message["type"]
        data = message.get("data")
        if not isinstance(data, Mapping) or kind == "status":
            return
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            # Which prompt it is about cannot be known (the replay of the running node on
            # connect, another tool, an old server): history tells instead.
            log.debug("ignoring a %s frame from %s that names no prompt", kind, self.url)
            return
        self._tracker(prompt_id).events.put_nowait(_Event(kind, data))

    def _tracker(self, prompt_id: str) -> _Tracker:
        tracker = self._trackers.get(prompt_id)
        if tracker is None:
            tracker = self._trackers[prompt_id] = _Tracker()
            if len(self._trackers) > self._MAX_TRACKERS:
                # Frames of prompts nobody follows (another tool on this client id): drop oldest.
                for stale in [k for k, t in self._trackers.items() if not t.followers][:100]:
                    del self._trackers[stale]
        return tracker

    def _forget(self, prompt_id: str) -> None:
        tracker = self._trackers.get(prompt_id)
        if tracker is not None and not tracker.followers:
            del self._trackers[prompt_id]

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ComfyError(f"the client for {self.url} is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _send(
        self, method: str, path: str, *, within: float | None = None, **kwargs: Any
    ) -> _Answer:
        """One HTTP exchange, body read inside the attempt; 5xx raised to be retried."""
        session = self._ensure_session()
        url = self._base.with_path(self._base.path.rstrip("/") + path)
        if within is not None:  # instead of the session's request_timeout
            kwargs["timeout"] = aiohttp.ClientTimeout(total=within, connect=self._connect_timeout)
        async with session.request(method, url, **kwargs) as resp:
            body = await resp.read()
            if resp.status >= 500:
                raise _ServerError(resp.status, resp.reason, _one_line(body))
            return _Answer(resp.status, body, resp.content_type)

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), as tenacity would."""
        return float(min(self._retry_max_wait, self._retry_wait * 2 ** (attempt - 1)))

    def _log_retry(self, err: BaseException, timeout: float, attempt: int, attempts: int) -> None:
        log.info("ComfyUI at %s: %s; retrying (attempt %d of %d)", self.url,
                 _short_cause(err, timeout, self._connect_timeout), attempt + 1, attempts)

    def _give_up(
        self, what: str, err: BaseException, timeout: float, *, timed_out: str | None = None
    ) -> ComfyError:
        """The error for a call that failed through all its attempts.

        ComfyUnavailable only when no answer could be had at all (refused, host unknown, no
        connection, dropped before answering); a server that answered 5xx or kept a request
        past its timeout is ComfyUnhealthy, quoting what ComfyUI said.
        """
        if isinstance(err, _ServerError):
            return ComfyUnhealthy(self.url, what, err.text or err.reason or "no text",
                                  status=err.status)
        if _no_answer_in_time(err):
            return ComfyUnhealthy(self.url, what, timed_out or f"no answer within {timeout:g} s")
        if isinstance(err, aiohttp.ClientPayloadError):
            return ComfyUnhealthy(self.url, what, "the answer was cut off")
        return ComfyUnavailable(self.url, _short_cause(err, timeout, self._connect_timeout))

    async def _retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[_T]],
        *,
        within: float | None = None,
        retry_timeouts: bool = True,
        timed_out: str | None = None,
    ) -> _T:
        """Run `call` with the retry policy; map what is left to ComfyUnavailable/Unhealthy."""
        seconds = within if within is not None else self._request_timeout

        def before_sleep(state: RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome else None
            if err is not None:
                self._log_retry(err, seconds, state.attempt_number, self._retry_attempts)

        def retryable(err: BaseException) -> bool:
            return _is_transient(err) and (retry_timeouts or not _no_answer_in_time(err))

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self._retry_attempts),
            wait=wait_exponential(multiplier=self._retry_wait, max=self._retry_max_wait),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except _TRANSIENT as err:
            raise self._give_up(what, err, seconds, timed_out=timed_out) from err
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _known(self, prompt_id: str) -> bool:
        """Whether the server has this prompt queued, running or in history (one attempt).

        The queue is asked first: a prompt that ends between the two answers is then in history,
        where the other order would miss it.
        """
        answer = await self._send("GET", "/queue")
        if answer.status == 200 and prompt_id in _parse_queue(answer.json("GET /queue")):
            return True
        hist = await self._send("GET", f"/history/{prompt_id}")
        return self._parse_history(prompt_id, hist) is not None

    def _parse_history(self, prompt_id: str, answer: _Answer) -> PromptResult | None:
        if answer.status != 200:
            raise self._unexpected(f"GET /history/{prompt_id}", answer)
        body = answer.json(f"GET /history/{prompt_id}")
        if not isinstance(body, Mapping):
            raise ComfyProtocolError(f"GET /history/{prompt_id} did not answer an object",
                                     body=body)
        if prompt_id not in body:
            return None
        return parse_history_entry(prompt_id, body[prompt_id])

    def _unexpected(self, what: str, answer: _Answer) -> ComfyProtocolError:
        text = _one_line(answer.body)
        detail = f": {text}" if text else ""
        return ComfyProtocolError(f"{what} answered HTTP {answer.status}{detail}",
                                  status=answer.status, body=text)
