"""Contract tests: the client against every recording of a real ComfyUI 0.3.64.

A small aiohttp server on loopback replays one recording: its HTTP answers, and its websocket
frames after the prompt is posted. History stays `{}` and the prompt stays in the queue until the
last frame is sent, as on the real server. The replayed prompt ids are the recorded ones, not the
ones the client proposes (like a server that ignores `prompt_id`), which the client must follow.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from comfy.client import ComfyClient, OutputImage, PromptResult, QueueState
from comfy.errors import ComfyProtocolError, ComfyRejected
from tests.comfy.conftest import (
    fast_client,
    load_trace,
    post_to_comfy,
    run_prompt,
    serve_app,
    trace_files,
)

ENDINGS = {"execution_success", "execution_error", "execution_interrupted"}


class Replay:
    """Serves one recorded session.

    Frames start once the client first looks at the queue or history after posting (so the
    test sees them whatever the scheduling). `hold_end` keeps the last frame until
    POST /interrupt; `history_delay` writes history that long after the last frame;
    `write_history=False` never writes it (the prompt then stays "running").
    """

    def __init__(
        self, trace: dict[str, Any], *, hold_end: bool = False, history_delay: float = 0.0,
        write_history: bool = True,
    ) -> None:
        self.trace = trace
        self.hold_end = hold_end
        self.history_delay = history_delay
        self.write_history = write_history
        self.looked = asyncio.Event()
        self.requests: list[tuple[str, str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.socket_open = asyncio.Event()
        self.posts = [r for r in (trace.get("post_response"), trace.get("first"),
                                  trace.get("second")) if r is not None]
        self.running: list[str] = []
        self.pending: list[str] = []
        self.done = False
        self.end_released = asyncio.Event()
        self.frames_task: asyncio.Task[None] | None = None
        self.views = list(trace.get("view", []))

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.get("/ws", self.ws),
            web.post("/prompt", self.post_prompt),
            web.get("/history/{pid}", self.history),
            web.get("/queue", self.queue),
            web.post("/queue", self.post_queue),
            web.post("/interrupt", self.interrupt),
            web.post("/history", self.post_history),
            web.get("/view", self.view),
            web.post("/upload/image", self.upload),
            web.get("/system_stats", self.system_stats),
        ])
        return app

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.requests.append(("WS", "/ws", dict(request.query)))
        frames = self.trace.get("ws_messages") or [{"type": "status", "data": {}}]
        await ws.send_json(frames[0])  # the status frame a new socket gets at once
        self.sockets.append(ws)
        self.socket_open.set()
        async for _ in ws:
            pass
        return ws

    async def stream(self) -> None:
        await self.looked.wait()
        frames = self.trace["ws_messages"][1:]
        for index, frame in enumerate(frames):
            if self.hold_end and index == len(frames) - 1:
                await self.end_released.wait()
            for ws in self.sockets:
                await ws.send_json(frame)
            await asyncio.sleep(0)
        if not self.write_history:
            return
        await asyncio.sleep(self.history_delay)
        self.done = True
        self.running.clear()

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", "/prompt", body))
        status = self.trace.get("post_status", 200)
        answer = self.posts.pop(0)
        if status != 200:
            return web.json_response(answer, status=status)
        if not self.running:
            self.running.append(answer["prompt_id"])
            if self.trace.get("ws_messages"):
                self.frames_task = asyncio.create_task(self.stream())
        else:
            self.pending.append(answer["prompt_id"])
        return web.json_response(answer)

    async def history(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        self.requests.append(("GET", f"/history/{pid}", None))
        self.looked.set()
        recorded = self.trace.get("history") or {}
        if self.done and pid in recorded:
            return web.json_response({pid: recorded[pid]})
        if "history_unknown" in self.trace and pid not in recorded:
            unknown = self.trace["history_unknown"]
            return web.json_response(unknown["body"], status=unknown["status"])
        return web.json_response({})

    async def queue(self, request: web.Request) -> web.Response:
        def item(number: int, pid: str) -> list[Any]:
            return [number, pid, {}, {"client_id": "x"}, ["4"]]

        self.requests.append(("GET", "/queue", None))
        self.looked.set()
        return web.json_response({
            "queue_running": [item(11, pid) for pid in self.running],
            "queue_pending": [item(12 + i, pid) for i, pid in enumerate(self.pending)],
        })

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", "/queue", body))
        self.pending = [pid for pid in self.pending if pid not in body.get("delete", [])]
        return web.Response(status=self.trace.get("delete_status", 200))

    async def post_history(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", "/history", await request.json()))
        return web.Response(status=self.trace.get("delete_status", 200))

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append(("POST", "/interrupt", body))
        self.end_released.set()
        return web.Response(status=self.trace.get("interrupt_status", 200))

    async def view(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(("GET", "/view", query))
        if ".." in query.get("filename", ""):
            return web.Response(status=self.trace.get("view_traversal_status", 400))
        if not self.views:
            return web.Response(status=self.trace.get("view_missing_status", 404))
        view = self.views.pop(0)
        return web.Response(status=view["status"], body=b"\x89PNG" + b"\0" * (view["bytes"] - 4),
                            content_type=view["content_type"])

    async def upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post["image"]
        assert isinstance(image, web.FileField)
        self.requests.append(("POST", "/upload/image", {
            "filename": image.filename, "subfolder": post.get("subfolder"),
            "overwrite": post.get("overwrite"), "type": post.get("type"),
            "size": len(image.file.read())}))
        return web.json_response(self.trace["upload_response"],
                                 status=self.trace.get("upload_status", 200))

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.trace["system_stats"])


@asynccontextmanager
async def replaying(
    trace: dict[str, Any], *, client_options: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[tuple[Replay, ComfyClient]]:
    replay = Replay(trace, **options)
    async with serve_app(replay.app()) as url, fast_client(url, **client_options or {}) as client:
        yield replay, client
        if replay.frames_task is not None:
            replay.frames_task.cancel()


def recorded_workflow(trace: dict[str, Any], prompt_id: str) -> dict[str, Any]:
    workflow: dict[str, Any] = trace["history"][prompt_id]["prompt"][2]
    return workflow


def recorded_images(trace: dict[str, Any], prompt_id: str) -> list[OutputImage]:
    outputs = trace["history"][prompt_id]["outputs"]
    return [OutputImage(node, i["filename"], i["subfolder"], i["type"])
            for node, out in outputs.items() for i in out["images"]]


# -- one scenario per recording ----------------------------------------------------------------


async def success_scenario(trace: dict[str, Any]) -> None:
    pid = trace["post_response"]["prompt_id"]
    progress: list[tuple[str, float, float]] = []
    async with replaying(trace) as (replay, client):
        result = await run_prompt(client, recorded_workflow(trace, pid),
                                  lambda node, value, top: progress.append((node, value, top)))
        assert result.prompt_id == pid
        assert result.status == "success"
        assert result.error is None
        assert result.images == recorded_images(trace, pid)
        assert result.images == result.saved_images
        for image, view in zip(result.images, trace["view"], strict=True):
            data = await client.download(image)
            assert len(data) == view["bytes"]
        queries = [q for method, path, q in replay.requests if path == "/view"]
        assert [q["filename"] for q in queries] == [i.filename for i in result.images]
        assert all(q["subfolder"] == result.images[0].subfolder and q["type"] == "output"
                   for q in queries)
        posted = next(body for method, path, body in replay.requests if path == "/prompt")
        assert posted["client_id"] == client.client_id
        assert posted["prompt"] == recorded_workflow(trace, pid)
        assert isinstance(posted["prompt_id"], str)
        ws_query = next(q for method, path, q in replay.requests if method == "WS")
        assert ws_query == {"clientId": client.client_id}
    nodes = sorted({node for node, _, _ in progress})
    assert nodes == sorted(recorded_workflow(trace, pid))
    for node in nodes:  # each node reported running (0 of 1) then finished (1 of 1)
        assert [(v, t) for n, v, t in progress if n == node] == [(0.0, 1.0), (1.0, 1.0)]


async def test_01_success() -> None:
    await success_scenario(load_trace("01_success.json"))


async def test_02_upload_then_img2img() -> None:
    trace = load_trace("02_upload_img2img.json")
    async with replaying(trace) as (replay, client):
        name = await client.upload_image(b"\x89PNG fake", "parent-7.png", subfolder="curator")
        assert name == "curator/parent-7.png"
        upload = next(body for method, path, body in replay.requests if path == "/upload/image")
        assert upload == {"filename": "parent-7.png", "subfolder": "curator",
                          "overwrite": "true", "type": "input", "size": 9}
        pid = trace["post_response"]["prompt_id"]
        workflow = recorded_workflow(trace, pid)
        assert workflow["1"]["inputs"]["image"] == name  # what the recorded run used
    await success_scenario(trace)


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("03_node_errors.json",
         "node 1 LoadImage: image 'does-not-exist.png' is not in the input folder"),
        ("04_unknown_node.json", "node type 'NoSuchNode' is not installed on this ComfyUI"),
        ("05_no_outputs.json", "the workflow has no output node"),
        ("08_missing_model.json",
         "checkpoint 'sd_xl_base_1.0.safetensors' is not installed on this ComfyUI"),
    ],
)
async def test_rejections_are_readable_and_not_retried(name: str, sentence: str) -> None:
    trace = load_trace(name)
    async with replaying(trace) as (replay, client):
        with pytest.raises(ComfyRejected) as caught:
            await client.submit({"1": {"class_type": "SaveImage", "inputs": {}}})
    assert str(caught.value) == sentence
    assert caught.value.raw == trace["post_response"]
    assert caught.value.status == trace["post_status"] == 400
    assert [path for _, path, _ in replay.requests].count("/prompt") == 1


async def test_09_text_that_is_no_number_is_one_readable_line() -> None:
    case = load_trace("09_input_conversion.json")["cases"]["float_text_for_int"]
    trace = {"post_status": case["post_status"], "post_response": case["post_response"]}
    async with replaying(trace) as (_, client):
        with pytest.raises(ComfyRejected) as caught:
            await client.submit(case["sent"])
    assert str(caught.value) == "node 1 SolidMask: width '7.5' is not a whole number (INT)"


async def test_10_history_entries_are_deleted_by_id() -> None:
    trace = load_trace("10_history_delete.json")
    async with replaying(trace) as (replay, client):
        await client.delete_history([trace["deleted"], "no-such-prompt"])
        await client.delete_history([])  # nothing to ask
    assert [r for r in replay.requests if r[1] == "/history"] == [
        ("POST", "/history", {"delete": [trace["deleted"], "no-such-prompt"]})]
    assert trace["history_deleted"] == {} and trace["history_kept_outputs"]
    assert all(view["status"] == 200 for view in trace["view_after_delete"])  # files stay


async def test_11_a_value_no_dropdown_offers_is_one_line_at_post_or_at_run() -> None:
    trace = load_trace("11_dropdown_checks.json")
    async with replaying(trace["classic"]) as (_, client):
        with pytest.raises(ComfyRejected) as caught:
            await client.submit({"1": {"class_type": "SaveImage", "inputs": {}}})
    assert str(caught.value) == ("node 2 ImageScale: upscale_method 'sideways' is not one of "
                                 "the values this ComfyUI accepts")
    schema = trace["comfy_api"]
    pid = schema["post_response"]["prompt_id"]
    async with replaying(schema) as (_, client):
        result = await run_prompt(client, recorded_workflow(schema, pid))
    assert (result.status, result.error) == (
        "error", "node 2 (ImageBlend): ValueError: Unsupported blend mode: sideways")


async def test_06_runtime_error_is_one_readable_line() -> None:
    trace = load_trace("06_runtime_error.json")
    pid = trace["post_response"]["prompt_id"]
    async with replaying(trace) as (_, client):
        result = await run_prompt(client, recorded_workflow(trace, pid))
    assert result.prompt_id == pid
    assert result.status == "error"
    assert result.error == "node 2 (ImageScaleBy): ValueError: height and width must be > 0"
    assert result.images == []


async def test_07_queue_cancel_interrupt_and_misc() -> None:
    trace = load_trace("07_interrupt_queue_misc.json")
    first, second = trace["first"]["prompt_id"], trace["second"]["prompt_id"]
    workflow = recorded_workflow(trace, first)
    async with replaying(trace, hold_end=True) as (replay, client):
        assert await client.submit(workflow) == first
        assert await client.submit(workflow) == second
        state = await client.queue()
        shape = trace["queue_while_running"]
        assert (len(state.running), len(state.pending)) == (
            shape["queue_running_len"], shape["queue_pending_len"])
        assert state == QueueState(running=[shape["running_prompt_id"]], pending=[second])

        await post_to_comfy(client.url, "/queue", {"delete": [second]})
        assert await client.queue() == QueueState(running=[first], pending=[])
        assert ("POST", "/queue", {"delete": [second]}) in replay.requests
        assert not any(path == "/interrupt" for _, path, _ in replay.requests)

        await post_to_comfy(client.url, "/interrupt", {"prompt_id": first})
        assert ("POST", "/interrupt", {"prompt_id": first}) in replay.requests
        result = await client.follow(first)
        assert result.status == "interrupted"
        assert result.error == "interrupted at node 3 (ImageBlur)"
        assert result.images == []

        assert await client.history(second) is None  # deleted before it ran: {}
        assert trace["history_deleted"] == {}
        assert await client.queue() == QueueState(running=[], pending=[])
        assert trace["queue_after"] == {"queue_running": [], "queue_pending": []}
        assert await client.history("no-such-prompt") is None
        assert "no-such-prompt" not in await client.queue()

        with pytest.raises(ComfyProtocolError) as traversal:
            await client.download(OutputImage("4", "../secret.png", "", "output"))
        assert traversal.value.status == trace["view_traversal_status"] == 400
        with pytest.raises(ComfyProtocolError) as missing:
            await client.download(OutputImage("4", "gone.png", "", "output"))
        assert missing.value.status == trace["view_missing_status"] == 404
        assert "gone.png" in str(missing.value)

        assert await client.system_stats() == trace["system_stats"]


def test_every_recording_has_a_contract_test() -> None:
    covered = {"01_success.json", "02_upload_img2img.json", "03_node_errors.json",
               "04_unknown_node.json", "05_no_outputs.json", "06_runtime_error.json",
               "07_interrupt_queue_misc.json", "08_missing_model.json",
               "09_input_conversion.json", "10_history_delete.json",
               "11_dropdown_checks.json"}
    assert {path.name for path in trace_files()} == covered


# -- variants of recording 01 for server behaviour the recordings do not show ------------------


def frames_of(trace: dict[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = json.loads(json.dumps(trace["ws_messages"]))
    return frames


async def run_variant(
    trace: dict[str, Any], prompt_id: str, **options: Any
) -> tuple[Replay, PromptResult]:
    async with replaying(trace, **options) as (replay, client):
        workflow = {"1": {"class_type": "SaveImage", "inputs": {}}}  # the replay ignores it
        result = await asyncio.wait_for(run_prompt(client, workflow), 5)
    assert result.prompt_id == prompt_id
    return replay, result


async def test_older_servers_end_with_executing_null_and_no_prompt_id() -> None:
    """A frame naming no prompt cannot end one; the silence that follows sends us to history."""
    trace = load_trace("01_success.json")
    pid = trace["post_response"]["prompt_id"]
    frames = [f for f in frames_of(trace) if f["type"] not in ("execution_success",
                                                                 "progress_state")]
    for frame in frames:
        if frame["type"] == "executing":
            frame["data"].pop("prompt_id", None)
    frames.append({"type": "executing", "data": {"node": None}})
    entry = dict(trace["history"][pid])
    del entry["status"]  # servers before 2024 wrote no status
    _, result = await run_variant({**trace, "ws_messages": frames, "history": {pid: entry}}, pid,
                                  client_options={"silence_after": 0.1})
    assert result.status == "success"
    assert result.images == recorded_images(trace, pid)


async def test_a_late_history_entry_is_waited_for_after_the_end_frame() -> None:
    """ComfyUI sends execution_success just before it writes history (here: well after, so a
    busy test machine still asks before the entry is there)."""
    trace = load_trace("01_success.json")
    pid = trace["post_response"]["prompt_id"]
    replay, result = await run_variant(trace, pid, history_delay=0.5)
    assert result.status == "success"
    assert result.images == recorded_images(trace, pid)
    history_calls = [p for m, p, _ in replay.requests if p == f"/history/{pid}"]
    assert len(history_calls) >= 3  # at start, right after the end frame, once written


async def test_without_any_history_the_frames_decide() -> None:
    trace = load_trace("06_runtime_error.json")
    pid = trace["post_response"]["prompt_id"]
    _, result = await run_variant(trace, pid, write_history=False,
                                  client_options={"history_grace": 0.2})
    assert result.status == "error"
    assert result.error == "node 2 (ImageScaleBy): ValueError: height and width must be > 0"
