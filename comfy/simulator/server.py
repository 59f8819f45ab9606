"""The simulated ComfyUI's HTTP and websocket server: its routes, the queue and history."""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import WSMsgType, web

from comfy.simulator.catalogue import object_info
from comfy.simulator.execution import Execution
from comfy.simulator.faults import FaultInjection
from comfy.simulator.state import Job, PromptTiming
from comfy.simulator.validation import error

log = logging.getLogger(__name__)

_MAX_UPLOAD = 100 * 2**20
_INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


def _internal_error() -> web.Response:
    """What aiohttp answers when a ComfyUI handler raises."""
    return web.Response(status=500, text=_INTERNAL_ERROR)


class SimulatedComfy(FaultInjection, Execution):
    """An aiohttp server that behaves like ComfyUI 0.3.64 for the endpoints this project uses."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on a free port when port is 0) and start running prompts."""
        self._files.create()
        await self._listen(self._requested_port)
        self._start_worker()
        log.info("simulated ComfyUI listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and running; remove the temporary folder if this made one."""
        await self._unlisten()
        await self._stop_worker()
        if self._own_root:
            shutil.rmtree(self._files.root, ignore_errors=True)

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulated ComfyUI is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulated ComfyUI is not started")
        return self._port

    @property
    def root(self) -> Path:
        """Folder holding input/, output/ and temp/ like a ComfyUI install."""
        return self._files.root

    @property
    def running(self) -> str | None:
        """Prompt id being executed, if any."""
        return self._running.prompt_id if self._running else None

    @property
    def pending(self) -> list[str]:
        """Prompt ids waiting, in the order they will run."""
        return [job.prompt_id for job in sorted(self._pending, key=lambda j: j.number)]

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        return self._history.get(prompt_id)

    def idle_gaps(self) -> list[float]:
        """Seconds between each prompt's end and the next one's start (server side)."""
        done = [t for t in self.timings if t.started is not None]
        gaps = []
        for before, after in itertools.pairwise(done):
            if before.ended is not None and after.started is not None:
                gaps.append(after.started - before.ended)
        return gaps

    async def wait_running(self) -> str:
        """Wait until a prompt is executing; returns its id (wrap in asyncio.timeout)."""
        while self._running is None:
            self._started.clear()
            await self._started.wait()
        return self._running.prompt_id

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or running (wrap in asyncio.timeout as needed)."""
        await self._idle.wait()

    async def wait_ended(self, prompt_id: str) -> None:
        """Wait until this prompt has ended and its history is written, however late it was
        queued (wrap in asyncio.timeout)."""
        while prompt_id not in self._history:
            self._ended.clear()
            await self._ended.wait()

    async def wait_worker_asleep(self) -> None:
        """Wait until the worker has taken in every prompt queued and every resume so far and
        waits for more (paused, or nothing to run): then what it did not start, it will not
        start by itself (wrap in asyncio.timeout)."""
        await self._asleep.wait()

    async def wait_unregistered(self, client_id: str) -> None:
        """Wait until no socket is registered for this client id (wrap in asyncio.timeout)."""
        while client_id in self._sockets:
            self._unregistered.clear()
            await self._unregistered.wait()

    # -- HTTP server ---------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware], client_max_size=_MAX_UPLOAD)
        routes = [
            web.get("/ws", self._ws),
            web.post("/prompt", self._post_prompt),
            web.get("/prompt", self._get_prompt),
            web.get("/queue", self._get_queue),
            web.post("/queue", self._post_queue),
            web.post("/interrupt", self._post_interrupt),
            web.get("/history", self._get_history_all),
            web.get("/history/{prompt_id}", self._get_history),
            web.post("/history", self._post_history),
            web.get("/view", self._files.view),
            web.post("/upload/image", self._files.upload),
            web.get("/system_stats", self._system_stats),
            web.get("/object_info", self._object_info_all),
            web.get("/object_info/{node_class}", self._object_info_one),
            web.get("/models", self._get_model_folders),
            web.get("/models/{folder}", self._get_models),
        ]
        app.add_routes(routes)
        # ComfyUI serves every route under /api too (its frontend uses that prefix).
        app.add_routes([web.route(r.method, "/api" + r.path, r.handler) for r in routes
                        if isinstance(r, web.RouteDef)])
        return app

    async def _listen(self, port: int) -> None:
        runner = web.AppRunner(self._make_app(), shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self._port is None:
            addresses = runner.addresses
            self._port = int(addresses[0][1])

    async def _unlisten(self) -> None:
        if self._runner is None:
            return
        await self.drop_websockets()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        """server.py websocket_handler, quirks included.

        A reconnect with the same client id takes the id over; when the older socket closes
        afterwards, its cleanup unregisters the id, so the newer socket gets no more frames.
        """
        if self._refuse_ws or self._refuse_ws_prompt:
            return web.Response(status=503, text="websocket refused (simulated)")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws
        try:
            status = {"status": self._queue_info(), "sid": sid}
            await ws.send_json({"type": "status", "data": status})
            job = self._running
            if job is not None and job.client_id == sid and self._last_node is not None:
                await ws.send_json({"type": "executing", "data": {"node": self._last_node}})
            first = True
            async for msg in ws:
                if first and msg.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError, AttributeError):
                        if json.loads(msg.data).get("type") == "feature_flags":
                            await ws.send_json({"type": "feature_flags", "data": {
                                "supports_preview_metadata": True,
                                "max_upload_size": _MAX_UPLOAD}})
                first = False
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if id(ws) in self._dropped:
                self._dropped.discard(id(ws))  # the simulator closed it and let go of it
            else:
                self._sockets.pop(sid, None)
                self._unregistered.set()
        return ws

    # -- endpoints -----------------------------------------------------------------------------

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            return await self._accept_prompt(request)
        except Exception:
            # ComfyUI's handler does not guard these reads: aiohttp answers its own 500.
            log.info("simulated ComfyUI: POST /prompt raised", exc_info=True)
            return _internal_error()

    async def _accept_prompt(self, request: web.Request) -> web.Response:
        """server.py post_prompt, step by step (what raises there raises here).

        The body need not be an object: `in` and indexing act on whatever JSON it holds.
        """
        body: Any = await request.json()
        if self._rejections:
            status, answer = self._rejections.pop(0)
            return web.json_response(answer, status=status)
        number: int | float
        if "number" in body:
            number = float(body["number"])
        else:
            number = self._number
            if "front" in body and body["front"]:  # noqa: RUF019
                number = -number
            self._number += 1
        if "prompt" not in body:
            missing = error("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response({"error": missing, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        valid, error_info, outputs, node_errors = self._validator.validate(prompt)
        extra_data = body["extra_data"] if "extra_data" in body else {}  # noqa: SIM401
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not valid:
            log.info("simulated ComfyUI: invalid prompt: %s", error_info)
            return web.json_response({"error": error_info, "node_errors": node_errors}, status=400)
        job = Job(number, prompt_id, prompt, extra_data, outputs,
                  PromptTiming(prompt_id, number, time.monotonic()))
        self._pending.append(job)
        self._idle.clear()
        self._wake()
        await self._status()
        return web.json_response({"prompt_id": prompt_id, "number": number,
                                  "node_errors": node_errors})

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [self._running.queue_item()] if self._running else []
        pending = [job.queue_item() for job in self._pending]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        """Like PromptQueue.wipe_queue/delete_queue_item: a status frame per change."""
        try:
            body: Any = await request.json()
            if "clear" in body and body["clear"]:  # noqa: RUF019
                self._pending.clear()
                await self._status()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    job = next((j for j in self._pending if j.prompt_id == prompt_id), None)
                    if job is None:
                        continue
                    if len(self._pending) == 1:
                        self._pending.clear()
                        await self._status()
                    else:
                        self._pending.remove(job)
                    await self._status()
        except Exception:
            log.info("simulated ComfyUI: POST /queue raised", exc_info=True)
            return _internal_error()
        finally:
            if not self._pending and self._running is None:
                self._idle.set()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        """Raise the interrupt flag; the running prompt sees it at its next check."""
        try:
            try:
                body: Any = await request.json()
            except json.JSONDecodeError:
                body = {}
            wanted = body.get("prompt_id")
        except Exception:
            return _internal_error()
        if not wanted or (self._running is not None and wanted == self._running.prompt_id):
            self._interrupt.set()
        return web.Response(status=200)

    async def _get_history_all(self, request: web.Request) -> web.Response:
        items = list(self._history.items())
        max_items = request.query.get("max_items")
        if max_items and max_items.isdigit():
            items = items[-int(max_items):] if int(max_items) else []
        return web.json_response(dict(items))

    async def _get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
            if "clear" in body and body["clear"]:  # noqa: RUF019
                self._history.clear()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    self._history.pop(prompt_id, None)
        except Exception:
            return _internal_error()
        return web.Response(status=200)

    async def _system_stats(self, request: web.Request) -> web.Response:
        ram = 16 * 2**30
        return web.json_response({
            "system": {
                "os": os.name,
                "ram_total": ram,
                "ram_free": ram // 2,
                "comfyui_version": "0.3.64",
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "simulated",
                "embedded_python": False,
                "argv": ["comfy-curator", "simulated-comfyui"],
            },
            "devices": [{
                "name": "simulated", "type": "cpu", "index": None,
                "vram_total": ram, "vram_free": ram // 2,
                "torch_vram_total": ram, "torch_vram_free": ram // 2,
            }],
        })

    async def _object_info_all(self, request: web.Request) -> web.Response:
        return web.json_response(
            {name: object_info(node, self._choices) for name, node in self.node_types.items()})

    async def _object_info_one(self, request: web.Request) -> web.Response:
        node = self.node_types.get(request.match_info["node_class"])
        return web.json_response({node.name: object_info(node, self._choices)} if node else {})

    async def _get_model_folders(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.models))

    async def _get_models(self, request: web.Request) -> web.Response:
        files = self.models.get(request.match_info["folder"])
        if files is None:
            return web.Response(status=404)  # as ComfyUI: unknown folders have no body
        return web.json_response(sorted(files))
