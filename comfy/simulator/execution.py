"""Running prompts as PromptExecutor does: one at a time, in ComfyUI's order, with its cache.

Each node's share of the prompt's duration is spent before it runs (in a worker thread); a
sampler reports progress per step; the interrupt flag is seen at a node's start or a step.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from PIL import Image

from comfy.simulator.catalogue import NodeContext
from comfy.simulator.faults import Failure, InjectedFailure
from comfy.simulator.graph import execution_order, resolve, signature
from comfy.simulator.state import Job, ServerState
from comfy.simulator.validation import type_name

log = logging.getLogger(__name__)


class _Interrupted(Exception):
    pass


class _CycleError(Exception):
    pass


class Execution(ServerState):
    """The worker: takes queued prompts in ComfyUI's order and runs their nodes."""

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work_loop(), name="simulated-comfy-worker")

    async def _stop_worker(self) -> None:
        self._asleep.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _work_loop(self) -> None:
        while True:
            while self._paused or not self._pending:
                if not self._pending and self._running is None:
                    self._idle.set()
                self._work.clear()
                self._asleep.set()
                await self._work.wait()
            job = min(self._pending, key=lambda j: (j.number, j.prompt_id))  # heap order
            self._pending.remove(job)
            self._running = job  # taken and marked running with no await in between
            self._started.set()
            self._interrupt.clear()  # an interrupt raised while idle does not reach this one
            job.timing.started = time.monotonic()
            self.timings.append(job.timing)
            try:
                await self._execute(job)
            except Exception:  # pragma: no cover - a bug in the simulator itself
                log.exception("simulated ComfyUI failed on prompt %s", job.prompt_id)
                if self._running is job:
                    self._running = None
                    self._refuse_ws_prompt = False

    async def _execute(self, job: Job) -> None:
        """PromptExecutor.execute_async, then main.prompt_worker's end of a prompt."""
        pid, sid = job.prompt_id, job.client_id
        messages: list[list[Any]] = []

        async def emit(kind: str, data: dict[str, Any], *, record: bool = False,
                       broadcast: bool = False) -> None:
            # Frames go to the submitting client; without one, most are not sent at all.
            if record:
                messages.append([kind, data])
            if sid is not None or broadcast:
                await self._send(kind, data, sid)

        async def progress(nodes: dict[str, dict[str, Any]]) -> None:
            await self._send("progress_state", {"prompt_id": pid, "nodes": dict(nodes)}, sid)

        def is_output(node_id: str) -> bool:
            return self.node_types[job.prompt[node_id]["class_type"]].output_node

        context = self._context(job.prompt)
        await self._status()
        await emit("execution_start", {"prompt_id": pid, "timestamp": _ms()}, record=True)
        keys = {node_id: signature(job.prompt, node_id, lambda n: self._is_changed(context, n))
                for node_id in job.prompt}
        used = set(keys.values())
        self._outputs_cache = {k: v for k, v in self._outputs_cache.items() if k in used}
        self._ui_cache = {k: v for k, v in self._ui_cache.items() if k in used}
        cached = [node_id for node_id in job.prompt if keys[node_id] in self._outputs_cache]
        await emit("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _ms()},
                   record=True)

        order, cycle = execution_order(job.prompt, job.outputs, lambda n: n in cached, is_output)
        full, _ = execution_order(job.prompt, job.outputs, lambda n: False, is_output)
        share = self.duration / max(len(full), 1)
        to_run = [n for n in order if n not in cached]
        failure = self._failures.pop(0) if self._failures and to_run else None
        fail_at = _failure_node(to_run, failure, is_output)
        drop = self._drop_next if to_run else None
        if to_run:
            self._drop_next = None

        values: dict[str, tuple[Any, ...]] = {
            n: self._outputs_cache[keys[n]] for n in cached}
        executed: list[str] = []
        states: dict[str, dict[str, Any]] = {}
        node_id = ""
        current_inputs: dict[str, Any] = {}
        ending: tuple[str, dict[str, Any]]
        try:
            for node_id in order:
                node = job.prompt[node_id]
                node_type = self.node_types[node["class_type"]]
                key = keys[node_id]
                current_inputs = {}
                if key in self._outputs_cache:
                    values[node_id] = self._outputs_cache[key]
                    ui_cached = self._ui_cache.get(key) or {}
                    await emit("executed", {"node": node_id, "display_node": node_id,
                                            "output": ui_cached.get("output"), "prompt_id": pid})
                    states[node_id] = self._state(pid, node_id, 1.0, 1.0, "finished")
                    await progress(states)
                    continue
                states[node_id] = self._state(pid, node_id, 0.0, 1.0, "running")
                await progress(states)
                self._last_node = node_id
                await emit("executing", {"node": node_id, "display_node": node_id,
                                         "prompt_id": pid})
                if drop is not None:
                    self._refuse_ws_prompt = drop
                    drop = None
                    await self.drop_websockets()
                inputs = resolve(node, values)
                current_inputs = {k: [_format_value(v)] for k, v in inputs.items()}
                self._check_interrupt()  # nodes.before_node_execution
                counter = node_type.steps_input
                steps = int(inputs.get(counter, 0)) if counter is not None else 0
                await self._spend(pid, node_id, share, steps, states, progress)
                if failure is not None and node_id == fail_at:
                    raise InjectedFailure(failure.message, failure.exception_type)
                result, ui = await asyncio.to_thread(node_type.run, context, inputs)
                values[node_id] = result
                if ui is not None:
                    self._ui_cache[key] = {
                        "meta": {"node_id": node_id, "display_node": node_id,
                                 "parent_node": None, "real_node_id": node_id},
                        "output": ui}
                    await emit("executed", {"node": node_id, "display_node": node_id,
                                            "output": ui, "prompt_id": pid})
                self._outputs_cache[key] = result
                top = float(states[node_id]["max"])
                states[node_id] = self._state(pid, node_id, top, top, "finished")
                await progress(states)
                executed.append(node_id)
            if cycle is not None:
                node_id = cycle
                raise _CycleError("Dependency cycle detected")
        except _Interrupted:
            ending = ("execution_interrupted", {
                "prompt_id": pid, "node_id": node_id,
                "node_type": job.prompt[node_id]["class_type"],
                "executed": list(executed), "timestamp": _ms()})
        except Exception as err:
            if isinstance(err, InjectedFailure):
                exception_type = err.exception_type
                tb = [f'  File "<simulator>", line 1, in {job.prompt[node_id]["class_type"]}\n']
            elif isinstance(err, _CycleError):
                exception_type, tb, current_inputs = "graph.DependencyCycleError", [], {}
            else:
                exception_type = type_name(err)
                tb = traceback.format_tb(err.__traceback__)
            ending = ("execution_error", {
                "prompt_id": pid, "node_id": node_id,
                "node_type": job.prompt[node_id]["class_type"],
                "executed": list(executed),
                "exception_message": f"{err}\n", "exception_type": exception_type,
                "traceback": tb, "current_inputs": current_inputs,
                "current_outputs": list(job.prompt), "timestamp": _ms()})
        else:
            ending = ("execution_success", {"prompt_id": pid, "timestamp": _ms()})
        await emit(*ending, record=True, broadcast=ending[0] == "execution_interrupted")

        success = ending[0] == "execution_success"
        ui_outputs = {n: self._ui_cache[keys[n]] for n in job.prompt if keys[n] in self._ui_cache}
        # History and the end of "running" change together, as in PromptQueue.task_done.
        self._history[pid] = {
            "prompt": job.queue_item(),
            "outputs": {n: ui["output"] for n, ui in ui_outputs.items()},
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": messages},
            "meta": {n: ui["meta"] for n, ui in ui_outputs.items()},
        }
        self._running = None
        self._ended.set()
        self._last_node = None
        job.timing.ended = time.monotonic()
        job.timing.status = {"execution_success": "success", "execution_error": "error",
                             "execution_interrupted": "interrupted"}[ending[0]]
        self._refuse_ws_prompt = False
        if not self._pending:
            self._idle.set()
        await self._status()
        if sid is not None:
            await self._send("executing", {"node": None, "prompt_id": pid}, sid)

    @staticmethod
    def _state(pid: str, node_id: str, value: float, top: float, state: str) -> dict[str, Any]:
        return {"value": value, "max": top, "state": state, "node_id": node_id,
                "prompt_id": pid, "display_node_id": node_id, "parent_node_id": None,
                "real_node_id": node_id}

    async def _spend(
        self, pid: str, node_id: str, seconds: float, steps: int,
        states: dict[str, dict[str, Any]],
        progress: Callable[[dict[str, dict[str, Any]]], Any],
    ) -> None:
        """Take this node's share of the prompt's duration; a sampler reports each step.

        Only a sampler looks at the interrupt flag while it works (its progress hook does).
        """
        if steps <= 0:
            if seconds > 0:
                await asyncio.sleep(seconds)
            return
        job = self._running
        sid = job.client_id if job is not None else None
        for step in range(1, steps + 1):
            if seconds > 0:
                await asyncio.sleep(seconds / steps)
            self._check_interrupt()
            await self._send("progress", {"value": step, "max": steps, "prompt_id": pid,
                                          "node": node_id}, sid)
            states[node_id] = self._state(pid, node_id, float(step), float(steps), "running")
            await progress(states)

    def _check_interrupt(self) -> None:
        """The flag stays raised until the next prompt starts, as nodes.interrupt_processing."""
        if self._interrupt.is_set():
            raise _Interrupted

    def _is_changed(self, context: NodeContext, node: dict[str, Any]) -> Any:
        """The node type's IS_CHANGED answer for this node (False: only its inputs count)."""
        node_type = self.node_types.get(node["class_type"])
        if node_type is None or node_type.is_changed is None:
            return False
        return node_type.is_changed(context, node.get("inputs") or {})


def _failure_node(
    order: list[str], failure: Failure | None, is_output: Callable[[str], bool]
) -> str:
    """Where an injected failure strikes: its node, else the last node that is not an output."""
    if failure is None:
        return ""
    if failure.node_id in order:
        return str(failure.node_id)
    inner = [n for n in order if not is_output(n)]
    return inner[-1] if inner else order[0]


def _ms() -> int:
    return int(time.time() * 1000)


def _format_value(value: Any) -> Any:
    """An input as an execution_error's current_inputs shows it."""
    if value is None or isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], Image.Image):
        return f"<{len(value)} image(s) {value[0].width}x{value[0].height}>"
    return str(value)

