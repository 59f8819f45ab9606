"""Fault injection: the hooks tests use to make the simulated ComfyUI misbehave."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

from comfy.simulator.state import ServerState


@dataclass
class Failure:
    message: str
    exception_type: str
    node_id: str | None


class InjectedFailure(Exception):
    def __init__(self, message: str, exception_type: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass
class Fault:
    """An injected answer for the requests that match (see `FaultInjection.fault`)."""

    path: str
    method: str | None
    status: int | None
    body: str
    delay: float
    times: int | None  # None: every matching request from now on
    after_handling: bool

    def matches(self, request: web.Request) -> bool:
        path = request.path.removeprefix("/api")
        if self.times == 0 or (self.method and request.method != self.method):
            return False
        return path == self.path or (self.path.endswith("*") and path.startswith(self.path[:-1]))


class FaultInjection(ServerState):
    """Hooks that make the server misbehave as a real one can; rules run in its middleware."""

    def reject_next_submit(self, body: Any, status: int = 400) -> None:
        """Answer the next POST /prompt with this body and status (queued, one per call)."""
        self._rejections.append((status, body))

    def fail_next_prompt(
        self, message: str = "simulated failure", *, exception_type: str = "RuntimeError",
        node_id: str | None = None,
    ) -> None:
        """Make the next prompt to run fail with an execution_error.

        It fails at `node_id`, or at its last non-output node (so earlier nodes show progress).
        """
        self._failures.append(Failure(message, exception_type, node_id))

    def drop_websockets_mid_prompt(self, *, refuse_reconnect: bool = True) -> None:
        """Close every websocket right after the next prompt's first node starts.

        With refuse_reconnect, new sockets are refused until that prompt ends, so a client can
        only learn the outcome from /history.
        """
        self._drop_next = refuse_reconnect

    async def drop_websockets(self) -> None:
        """Close every websocket now (clients may reconnect at once)."""
        for sid, ws in list(self._sockets.items()):
            if self._sockets.get(sid) is ws:
                del self._sockets[sid]
                self._unregistered.set()
            self._dropped.add(id(ws))
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulated drop")

    def refuse_websockets(self, refuse: bool = True) -> None:
        """While set, websocket upgrades answer 503 (HTTP keeps working)."""
        self._refuse_ws = refuse

    def fail_requests(
        self, count: int = 1, status: int = 500, *, after_handling: bool = False
    ) -> None:
        """Answer the next `count` HTTP requests (not websockets) with this 5xx status.

        With after_handling the request is handled first and only its answer is lost (a POST
        /prompt is then queued although the client saw an error).
        """
        self._http_faults = count
        self._http_fault_status = status
        self._http_fault_after = after_handling

    def fault(
        self, path: str, *, method: str | None = None, status: int | None = 500,
        body: str = "simulated server error", delay: float = 0.0, times: int | None = 1,
        after_handling: bool = False,
    ) -> None:
        """Answer requests to `path` (`/history/*` matches a prefix; `/api` is ignored) badly.

        The first `times` matching requests (None: all of them, until `clear_faults`) wait
        `delay` seconds, then answer `status` with `body`; status None handles the request
        after the delay (a busy server). With after_handling the request is handled first and
        the answer waits, so its effect happens whatever the client sees. Rules are tried in
        the order given.
        """
        self._faults.append(Fault(path, method, status, body, delay, times, after_handling))

    def clear_faults(self) -> None:
        """Forget every rule given to `fault`; requests are answered normally again."""
        self._faults.clear()

    def rename_outputs(self, rename: Callable[[str], str] | None) -> None:
        """Report each file saved from now on under `rename(name)` (history, frames) and serve
        it under that name from /view: a server whose output names are not what a client
        expects (a NUL byte, a very long suffix). None: names are reported as saved again."""
        self._files.rename = rename

    async def send_frame(
        self, kind: str, data: Mapping[str, Any], *, client_id: str | None = None
    ) -> None:
        """Send one websocket frame now, to one client id or to every socket."""
        await self._send(kind, data, client_id)

    def pause(self) -> None:
        """Stop starting new prompts (the running one finishes); they stay pending."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake()

    async def go_down(self, *, crash: bool = False) -> None:
        """Stop listening: connections are refused until `come_up`.

        crash=False is a network outage: prompts keep running and their history is kept.
        crash=True is a process death: the running prompt, the queue and history are lost.
        """
        await self._unlisten()
        if crash:
            await self._stop_worker()
            self._pending.clear()
            self._running = None
            self._history.clear()
            self._outputs_cache.clear()
            self._ui_cache.clear()
            self._number = 0
            self._idle.set()

    async def come_up(self) -> None:
        """Listen again on the same port (and run prompts again after a crash)."""
        if self._port is None:
            raise RuntimeError("the simulated ComfyUI was never started")
        await self._listen(self._port)
        self._start_worker()

    @web.middleware
    async def _fault_middleware(
        self, request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        if self._http_faults > 0 and not request.path.endswith("/ws"):
            self._http_faults -= 1
            if self._http_fault_after:
                await handler(request)
            return web.Response(status=self._http_fault_status, text="simulated server error")
        rule = next((f for f in self._faults if f.matches(request)), None)
        if rule is not None:
            if rule.times is not None:
                rule.times -= 1
            answer: web.StreamResponse | None = None
            if rule.after_handling:
                answer = await handler(request)
            elif rule.status is None:
                await request.read()  # a busy server has read the request: it will handle it
            await asyncio.sleep(rule.delay)
            if rule.status is not None:
                return web.Response(status=rule.status, text=rule.body)
            return answer if answer is not None else await handler(request)
        response: web.StreamResponse = await handler(request)
        return response
