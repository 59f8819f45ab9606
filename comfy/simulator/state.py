"""What a simulated ComfyUI holds: its queue, history, caches, sockets and injected faults.

The server, its executor and its fault injection are mixins over this state, as one object.
"""
from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from comfy.simulator.catalogue import MODEL_FOLDERS, Input, NodeContext, NodeType, combo_choices
from comfy.simulator.files import Folders
from comfy.simulator.nodes import NODE_TYPES
from comfy.simulator.validation import Validator

if TYPE_CHECKING:
    from comfy.simulator.faults import Failure, Fault


@dataclass
class PromptTiming:
    """Server-side life of one prompt (time.monotonic seconds)."""

    prompt_id: str
    number: int | float
    queued: float
    started: float | None = None
    ended: float | None = None
    status: str | None = None  # "success", "error" or "interrupted" once ended


@dataclass
class Job:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    timing: PromptTiming

    @property
    def client_id(self) -> str | None:
        cid = self.extra_data.get("client_id")
        return cid if isinstance(cid, str) else None

    def queue_item(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class ServerState(abc.ABC):
    """The state every part of the simulated server shares, and the frames it sends."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        duration: float = 0.5,
        models: Mapping[str, Sequence[str]] | None = None,
        installed_models: Sequence[str] = (),
        root: str | Path | None = None,
        seed: int = 0,
        nodes: Sequence[NodeType] = (),
    ) -> None:
        """
        duration: seconds each prompt takes, spread over its nodes (tests use ~0.02).
        models: file names per model folder, e.g. {"checkpoints": [...], "loras": [...],
            "vae": [...], "upscale_models": [...]}; folders not named are empty. None: no
            models at all, like a fresh ComfyUI install.
        installed_models: more checkpoint names (the same as models={"checkpoints": ...}).
        root: folder for input/, output/ and temp/; a temporary one (removed on stop) if None.
        seed: seeds the little randomness there is (names of preview files).
        nodes: node types served besides the core ones (one of the same name replaces it).
        """
        self.host = host
        self.duration = duration
        unknown = sorted(set(models or {}) - set(MODEL_FOLDERS))
        if unknown:
            raise ValueError(f"ComfyUI has no model folder {', '.join(unknown)}")
        self.models: dict[str, list[str]] = {
            folder: list((models or {}).get(folder, ())) for folder in MODEL_FOLDERS}
        self.models["checkpoints"].extend(installed_models)
        self.installed_models = self.models["checkpoints"]  # the same list: edits show
        self.node_types: dict[str, NodeType] = NODE_TYPES | {n.name: n for n in nodes}
        self.timings: list[PromptTiming] = []
        self._requested_port = port
        self._port: int | None = None
        self._own_root = root is None
        self._files = Folders(
            Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="simcomfy-")))
        self._validator = Validator(self.node_types, self._choices, self._context)
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._dropped: set[int] = set()  # ids of sockets drop_websockets closed
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._history: dict[str, dict[str, Any]] = {}
        # Node outputs and UI results by input signature, as ComfyUI's classic cache.
        self._outputs_cache: dict[Any, tuple[Any, ...]] = {}
        self._ui_cache: dict[Any, dict[str, Any]] = {}
        self._number = 0
        self._last_node: str | None = None
        self._worker: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = asyncio.Event()
        self._ended = asyncio.Event()  # set as each prompt's history is written
        self._asleep = asyncio.Event()  # the worker waits for work, every wake-up taken in
        self._unregistered = asyncio.Event()  # set as a socket's client id is let go
        self._interrupt = asyncio.Event()
        self._paused = False
        # Fault injection state.
        self._rejections: list[tuple[int, Any]] = []
        self._failures: list[Failure] = []
        self._drop_next: bool | None = None  # armed: drop sockets mid-prompt; value = block
        self._refuse_ws = False
        self._refuse_ws_prompt = False
        self._http_faults = 0
        self._http_fault_status = 500
        self._http_fault_after = False
        self._faults: list[Fault] = []

    def _choices(self, spec: Input) -> list[str]:
        return combo_choices(spec, self.models, self._files)

    def _context(self, prompt: dict[str, Any]) -> NodeContext:
        return NodeContext(self._files, prompt, self._rng)

    async def _send(self, kind: str, data: Mapping[str, Any], sid: str | None = None) -> None:
        """Send one frame to a client id, or to everyone (sid None), like PromptServer.send."""
        if sid is None:
            targets = list(self._sockets.values())
        else:
            target = self._sockets.get(sid)
            targets = [target] if target is not None else []
        text = json.dumps({"type": kind, "data": data})
        for ws in targets:
            if ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)

    def _queue_info(self) -> dict[str, Any]:
        remaining = len(self._pending) + (1 if self._running else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    async def _status(self) -> None:
        await self._send("status", {"status": self._queue_info()})

    def _wake(self) -> None:
        """Tell the worker the queue or the pause changed."""
        self._asleep.clear()
        self._work.set()

    # What the server, the executor and fault injection each provide to the others.

    @abc.abstractmethod
    async def _listen(self, port: int) -> None: ...

    @abc.abstractmethod
    async def _unlisten(self) -> None: ...

    @abc.abstractmethod
    def _start_worker(self) -> None: ...

    @abc.abstractmethod
    async def _stop_worker(self) -> None: ...

    @abc.abstractmethod
    async def drop_websockets(self) -> None: ...
