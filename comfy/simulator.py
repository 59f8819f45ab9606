"""A simulated ComfyUI server on loopback, for tests, benchmarks and the GPU-less demo.

It speaks the protocol recorded from ComfyUI 0.3.64 (see shared/comfyui-traces): the same
endpoints, websocket frames in the same order, the same history, queue and 400 shapes. Prompts run
one at a time in submission order, each taking `duration` seconds spread over its nodes, and a
useful subset of core nodes really runs (with Pillow), so images differ by seed, prompt and step:

    EmptyImage, LoadImage, ImageInvert, ImageBlur, ImageScale, ImageScaleBy, SaveImage,
    PreviewImage; and for model workflows CheckpointLoaderSimple, CLIPTextEncode,
    EmptyLatentImage, KSampler, VAEEncode, VAEDecode, which paint a deterministic pattern from
    the seed and prompt text (img2img blends it over the encoded image by `denoise`).

Faults can be injected (see the "fault injection" methods) and every prompt's server-side start
and end times are kept in `timings` for the idle-gap benchmark.

    async with SimulatedComfy(duration=0.5) as sim:
        ...  # sim.url
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import posixpath
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from aiohttp import WSCloseCode, web
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

__all__ = ["NODE_TYPES", "PromptTiming", "SimulatedComfy", "serve"]

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")

# ---------------------------------------------------------------------------------------------
# Node catalogue: what /object_info reports and what validation checks.

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm", "lcm", "ipndm", "deis",
    "res_multistep", "gradient_estimation", "er_sde", "sa_solver", "ddim", "uni_pc", "uni_pc_bh2",
)
BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")
SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)
_WIDGETS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class _In:
    """One required input. `choices` names a combo's values (a tuple, or a dynamic list)."""

    kind: str
    opts: Mapping[str, Any] | None = None
    choices: tuple[str, ...] | str | None = None


@dataclass(frozen=True)
class _NodeType:
    name: str
    inputs: Mapping[str, _In]
    outputs: tuple[str, ...]
    category: str
    display_name: str | None
    output_node: bool = False
    python_module: str = "nodes"
    description: str = ""
    hidden: Mapping[str, str] = field(default_factory=dict)


def _int(default: int, lo: int, hi: int, **extra: Any) -> _In:
    return _In("INT", {"default": default, "min": lo, "max": hi, **extra})


def _float(default: float, lo: float, hi: float, **extra: Any) -> _In:
    return _In("FLOAT", {"default": default, "min": lo, "max": hi, **extra})


_IMAGE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}

NODE_TYPES: dict[str, _NodeType] = {
    n.name: n
    for n in (
        _NodeType("EmptyImage", {
            "width": _int(512, 1, 16384, step=1), "height": _int(512, 1, 16384, step=1),
            "batch_size": _int(1, 1, 4096),
            "color": _int(0, 0, 0xFFFFFF, step=1, display="color"),
        }, ("IMAGE",), "image", "EmptyImage"),
        _NodeType("LoadImage", {"image": _In("COMBO", {"image_upload": True}, "input_files")},
                  ("IMAGE", "MASK"), "image", "Load Image"),
        _NodeType("ImageInvert", {"image": _In("IMAGE")}, ("IMAGE",), "image", "Invert Image"),
        _NodeType("ImageBlur", {
            "image": _In("IMAGE", {}), "blur_radius": _int(1, 1, 31, step=1),
            "sigma": _float(1.0, 0.1, 10.0, step=0.1),
        }, ("IMAGE",), "image/postprocessing", None,
            python_module="comfy_extras.nodes_post_processing"),
        _NodeType("ImageBlend", {
            "image1": _In("IMAGE"), "image2": _In("IMAGE"),
            "blend_factor": _float(0.5, 0.0, 1.0, step=0.01),
            "blend_mode": _In("COMBO", None, BLEND_MODES),
        }, ("IMAGE",), "image/postprocessing", "Image Blend",
            python_module="comfy_extras.nodes_post_processing"),
        _NodeType("ImageScale", {
            "image": _In("IMAGE"), "upscale_method": _In("COMBO", None, UPSCALE_METHODS),
            "width": _int(512, 0, 16384, step=1), "height": _int(512, 0, 16384, step=1),
            "crop": _In("COMBO", None, ("disabled", "center")),
        }, ("IMAGE",), "image/upscaling", "Upscale Image"),
        _NodeType("ImageScaleBy", {
            "image": _In("IMAGE"), "upscale_method": _In("COMBO", None, UPSCALE_METHODS),
            "scale_by": _float(1.0, 0.01, 8.0, step=0.01),
        }, ("IMAGE",), "image/upscaling", "Upscale Image By"),
        _NodeType("SaveImage", {
            "images": _In("IMAGE", {"tooltip": "The images to save."}),
            "filename_prefix": _In("STRING", {"default": "ComfyUI"}),
        }, (), "image", "Save Image", output_node=True, hidden=_IMAGE_HIDDEN,
            description="Saves the input images to your ComfyUI output directory."),
        _NodeType("PreviewImage", {"images": _In("IMAGE")}, (), "image", "Preview Image",
                  output_node=True, hidden=_IMAGE_HIDDEN,
                  description="Saves the input images to your ComfyUI output directory."),
        _NodeType("CheckpointLoaderSimple", {
            "ckpt_name": _In("COMBO", {"tooltip": "The name of the checkpoint (model) to load."},
                             "checkpoints"),
        }, ("MODEL", "CLIP", "VAE"), "loaders", "Load Checkpoint",
            description="Loads a diffusion model checkpoint."),
        _NodeType("CLIPTextEncode", {
            "text": _In("STRING", {"multiline": True, "dynamicPrompts": True}),
            "clip": _In("CLIP"),
        }, ("CONDITIONING",), "conditioning", "CLIP Text Encode (Prompt)"),
        _NodeType("EmptyLatentImage", {
            "width": _int(512, 16, 16384, step=8), "height": _int(512, 16, 16384, step=8),
            "batch_size": _int(1, 1, 4096),
        }, ("LATENT",), "latent", "Empty Latent Image"),
        _NodeType("KSampler", {
            "model": _In("MODEL"),
            "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF, control_after_generate=True),
            "steps": _int(20, 1, 10000), "cfg": _float(8.0, 0.0, 100.0, step=0.1, round=0.01),
            "sampler_name": _In("COMBO", {}, SAMPLERS), "scheduler": _In("COMBO", {}, SCHEDULERS),
            "positive": _In("CONDITIONING"), "negative": _In("CONDITIONING"),
            "latent_image": _In("LATENT"), "denoise": _float(1.0, 0.0, 1.0, step=0.01),
        }, ("LATENT",), "sampling", "KSampler"),
        _NodeType("VAEDecode", {"samples": _In("LATENT"), "vae": _In("VAE")}, ("IMAGE",),
                  "latent", "VAE Decode"),
        _NodeType("VAEEncode", {"pixels": _In("IMAGE"), "vae": _In("VAE")}, ("LATENT",),
                  "latent", "VAE Encode"),
    )
}


def _object_info(node: _NodeType, choices: Callable[[_In], list[str]]) -> dict[str, Any]:
    """The /object_info entry for one node type, in ComfyUI's shape."""
    required: dict[str, Any] = {}
    for name, spec in node.inputs.items():
        head: Any = choices(spec) if spec.kind == "COMBO" else spec.kind
        required[name] = [head] if spec.opts is None else [head, dict(spec.opts)]
    inputs: dict[str, Any] = {"required": required}
    order: dict[str, list[str]] = {"required": list(node.inputs)}
    if node.hidden:
        inputs["hidden"] = dict(node.hidden)
        order["hidden"] = list(node.hidden)
    return {
        "input": inputs,
        "input_order": order,
        "output": list(node.outputs),
        "output_is_list": [False] * len(node.outputs),
        "output_name": list(node.outputs),
        "name": node.name,
        "display_name": node.display_name,
        "description": node.description,
        "python_module": node.python_module,
        "category": node.category,
        "output_node": node.output_node,
    }


# ---------------------------------------------------------------------------------------------
# Values flowing between simulated nodes.


@dataclass(frozen=True)
class _Model:
    name: str


@dataclass(frozen=True)
class _Cond:
    text: str


@dataclass(frozen=True)
class _Latent:
    width: int
    height: int
    batch: int
    seed: int | None = None
    positive: str = ""
    negative: str = ""
    model: str = ""
    denoise: float = 1.0
    base: tuple[Image.Image, ...] = ()


class _Interrupted(Exception):
    pass


class _InjectedFailure(Exception):
    def __init__(self, message: str, exception_type: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


class _CycleError(Exception):
    pass


@dataclass
class PromptTiming:
    """Server-side life of one prompt (time.monotonic seconds)."""

    prompt_id: str
    number: int
    queued: float
    started: float | None = None
    ended: float | None = None
    status: str | None = None  # "success", "error" or "interrupted" once ended


@dataclass
class _Job:
    number: int
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


@dataclass
class _Failure:
    message: str
    exception_type: str
    node_id: str | None


@dataclass
class _Fault:
    """An injected answer for the requests that match (see `SimulatedComfy.fault`)."""

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


def _ms() -> int:
    return int(time.time() * 1000)


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": dict(extra)}


_ANNOTATED = re.compile(r"^(?P<name>.*) \[(?P<type>input|output|temp)\]$")
_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


# ---------------------------------------------------------------------------------------------


class SimulatedComfy:
    """An aiohttp server that behaves like ComfyUI 0.3.64 for the endpoints this project uses."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        duration: float = 0.5,
        installed_models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        root: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        """
        duration: seconds each prompt takes, spread over its nodes (tests use ~0.02).
        installed_models: checkpoint names CheckpointLoaderSimple accepts.
        root: folder for input/, output/ and temp/; a temporary one (removed on stop) if None.
        seed: seeds the little randomness there is (names of preview files).
        """
        self.host = host
        self.duration = duration
        self.installed_models = list(installed_models)
        self.timings: list[PromptTiming] = []
        self._requested_port = port
        self._port: int | None = None
        self._own_root = root is None
        self._root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="simcomfy-"))
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._pending: list[_Job] = []
        self._running: _Job | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._number = 0
        self._last_node: str | None = None
        self._worker: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._paused = False
        # Fault injection state.
        self._rejections: list[tuple[int, Any]] = []
        self._failures: list[_Failure] = []
        self._drop_next: bool | None = None  # armed: drop sockets mid-prompt; value = block
        self._refuse_ws = False
        self._refuse_ws_prompt = False
        self._http_faults = 0
        self._http_fault_status = 500
        self._http_fault_after = False
        self._faults: list[_Fault] = []

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
        for folder in ("input", "output", "temp"):
            (self._root / folder).mkdir(parents=True, exist_ok=True)
        await self._listen(self._requested_port)
        self._start_worker()
        log.info("simulated ComfyUI listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and running; remove the temporary folder if this made one."""
        await self._unlisten()
        await self._stop_worker()
        if self._own_root:
            shutil.rmtree(self._root, ignore_errors=True)

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
        return self._root

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

    # -- fault injection -----------------------------------------------------------------------

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
        self._failures.append(_Failure(message, exception_type, node_id))

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
        self._faults.append(_Fault(path, method, status, body, delay, times, after_handling))

    def clear_faults(self) -> None:
        """Forget every rule given to `fault`; requests are answered normally again."""
        self._faults.clear()

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
        self._work.set()

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
            self._number = 0
            self._idle.set()

    async def come_up(self) -> None:
        """Listen again on the same port (and run prompts again after a crash)."""
        if self._port is None:
            raise RuntimeError("the simulated ComfyUI was never started")
        await self._listen(self._port)
        self._start_worker()

    # -- HTTP server ---------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware], client_max_size=100 * 2**20)
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
            web.get("/view", self._view),
            web.post("/upload/image", self._upload),
            web.get("/system_stats", self._system_stats),
            web.get("/object_info", self._object_info_all),
            web.get("/object_info/{node_class}", self._object_info_one),
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

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_ws or self._refuse_ws_prompt:
            return web.Response(status=503, text="websocket refused (simulated)")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws  # a reconnect with the same id replaces the old socket
        try:
            status = {"status": self._queue_info(), "sid": sid}
            await ws.send_json({"type": "status", "data": status})
            job = self._running
            if job is not None and job.client_id == sid and self._last_node is not None:
                await ws.send_json({"type": "executing", "data": {"node": self._last_node}})
            async for _ in ws:
                pass  # ComfyUI ignores what clients send
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if self._sockets.get(sid) is ws:
                del self._sockets[sid]
        return ws

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

    # -- endpoints -----------------------------------------------------------------------------

    async def _post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()  # not JSON: ComfyUI lets it raise, so aiohttp answers 500
        if self._rejections:
            status, answer = self._rejections.pop(0)
            return web.json_response(answer, status=status)
        if not isinstance(body, dict):
            body = {}
        if isinstance(body.get("number"), int | float):
            number = body["number"]
        else:
            number = -self._number if body.get("front") else self._number
            self._number += 1
        if "prompt" not in body:
            error = _error("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        valid, error_info, outputs, node_errors = self._validate(prompt)
        if not valid:
            log.info("simulated ComfyUI: invalid prompt: %s", error_info)
            return web.json_response({"error": error_info, "node_errors": node_errors}, status=400)
        extra = body.get("extra_data")
        extra_data = dict(extra) if isinstance(extra, dict) else {}
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        job = _Job(number, prompt_id, prompt, extra_data, outputs,
                   PromptTiming(prompt_id, number, time.monotonic()))
        self._pending.append(job)
        self._idle.clear()
        self._work.set()
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
        body = await self._json_or_empty(request)
        if body.get("clear"):
            self._pending.clear()
        delete = body.get("delete")
        if isinstance(delete, list):
            self._pending = [job for job in self._pending if job.prompt_id not in delete]
        if not self._pending and self._running is None:
            self._idle.set()
        await self._status()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        wanted = body.get("prompt_id")
        if self._running is not None and (not wanted or wanted == self._running.prompt_id):
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
        body = await self._json_or_empty(request)
        if body.get("clear"):
            self._history.clear()
        for prompt_id in body.get("delete") or []:
            self._history.pop(str(prompt_id), None)
        return web.Response(status=200)

    async def _view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        folder_type = request.query.get("type", "output")
        annotated = _ANNOTATED.match(filename)
        if annotated:
            filename, folder_type = annotated.group("name"), annotated.group("type")
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if folder_type not in ("input", "output", "temp"):
            return web.Response(status=400)
        base = (self._root / folder_type).resolve()
        folder = (base / request.query.get("subfolder", "")).resolve()
        if not folder.is_relative_to(base):
            return web.Response(status=403)
        path = folder / posixpath.basename(filename)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    async def _upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        folder_type = str(post.get("type") or "input")
        if folder_type not in ("input", "output", "temp"):
            folder_type = "input"
        subfolder = str(post.get("subfolder") or "")
        overwrite = str(post.get("overwrite") or "") in ("true", "1")
        base = (self._root / folder_type).resolve()
        folder = (base / posixpath.normpath(subfolder)).resolve() if subfolder else base
        target = (folder / image.filename).resolve()
        if not target.is_relative_to(base) or target.parent != folder:
            return web.Response(status=400)
        data = image.file.read()
        name = image.filename
        if not overwrite:
            stem, dot, ext = name.rpartition(".")
            stem, ext = (stem, dot + ext) if dot else (name, "")
            counter = 1
            while target.exists() and target.read_bytes() != data:
                name = f"{stem} ({counter}){ext}"
                target = folder / name
                counter += 1
        folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": folder_type})

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
            {name: _object_info(node, self._choices) for name, node in NODE_TYPES.items()})

    async def _object_info_one(self, request: web.Request) -> web.Response:
        node = NODE_TYPES.get(request.match_info["node_class"])
        return web.json_response({node.name: _object_info(node, self._choices)} if node else {})

    @staticmethod
    async def _json_or_empty(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    # -- validation (like execution.validate_prompt) ---------------------------------------------

    def _choices(self, spec: _In) -> list[str]:
        if spec.choices == "checkpoints":
            return sorted(self.installed_models)
        if spec.choices == "input_files":
            base = self._root / "input"
            return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return list(spec.choices or ())

    def _validate(
        self, prompt: Any
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """(valid, error, outputs to run, node_errors), with ComfyUI's error shapes."""
        if not isinstance(prompt, dict):
            return False, _error("invalid_prompt", "Prompt is not an object"), [], {}
        outputs: list[str] = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return False, _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'"), [], {}
            node_type = NODE_TYPES.get(node["class_type"])
            if node_type is None:
                return False, _error(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'"), [], {}
            if node_type.output_node:
                outputs.append(str(node_id))
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {}

        validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
        good: list[str] = []
        node_errors: dict[str, Any] = {}
        for output in outputs:
            if self._validate_node(prompt, output, validated):
                good.append(output)
                continue
            for node_id in self._ancestors(prompt, output):
                ok, reasons = validated.get(node_id, (True, []))
                if not ok and reasons:
                    entry = node_errors.setdefault(node_id, {
                        "errors": reasons, "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(output)
        if not good:
            failed = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
            return False, failed, [], node_errors
        return True, None, good, node_errors

    @staticmethod
    def _ancestors(prompt: dict[str, Any], node_id: str) -> list[str]:
        seen: list[str] = []
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in seen or current not in prompt:
                continue
            seen.append(current)
            for value in (prompt[current].get("inputs") or {}).values():
                if isinstance(value, list) and len(value) == 2:
                    stack.append(str(value[0]))
        return seen

    def _validate_node(
        self, prompt: dict[str, Any], node_id: str,
        validated: dict[str, tuple[bool, list[dict[str, Any]]]],
    ) -> bool:
        if node_id in validated:
            return validated[node_id][0]
        validated[node_id] = (True, [])  # provisional: a cycle is reported when it runs
        node = prompt[node_id]
        node_type = NODE_TYPES[node["class_type"]]
        inputs = node.get("inputs") or {}
        errors: list[dict[str, Any]] = []
        valid = True
        for name, spec in node_type.inputs.items():
            config = [spec.kind] if spec.opts is None else [spec.kind, dict(spec.opts)]
            if name not in inputs:
                errors.append(_error("required_input_missing", "Required input is missing", name,
                                     input_name=name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                problem = self._check_link(prompt, name, value, spec, config)
                if problem is not None:
                    errors.append(problem)
                elif not self._validate_node(prompt, str(value[0]), validated):
                    valid = False
                continue
            if spec.kind not in _WIDGETS:
                errors.append(_error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name, input_name=name, input_config=config, received_value=value))
                continue
            problem = self._check_widget(node_type, name, value, spec, config)
            if problem is not None:
                errors.append(problem)
        if errors:
            valid = False
        validated[node_id] = (valid, errors)
        return valid

    @staticmethod
    def _check_link(
        prompt: dict[str, Any], name: str, value: list[Any], spec: _In, config: list[Any]
    ) -> dict[str, Any] | None:
        if len(value) != 2:
            return _error("bad_linked_input",
                          "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                          name, input_name=name, input_config=config, received_value=value)
        source = prompt.get(str(value[0]))
        if not isinstance(source, dict):
            return _error("exception_during_inner_validation",
                          "Exception when validating inner node",
                          f"node {value[0]} does not exist", input_name=name, linked_node=value)
        outputs = NODE_TYPES[source["class_type"]].outputs
        slot = value[1]
        if not isinstance(slot, int) or not 0 <= slot < len(outputs):
            return _error("bad_linked_input",
                          "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                          name, input_name=name, input_config=config, received_value=value)
        received = outputs[slot]
        if received != spec.kind:
            return _error("return_type_mismatch", "Return type mismatch between linked nodes",
                          f"{name}, received_type({received}) mismatch input_type({spec.kind})",
                          input_name=name, input_config=config, received_type=received,
                          linked_node=value)
        return None

    def _check_widget(
        self, node_type: _NodeType, name: str, value: Any, spec: _In, config: list[Any]
    ) -> dict[str, Any] | None:
        opts = spec.opts or {}
        if spec.kind in ("INT", "FLOAT"):
            try:
                number = int(value) if spec.kind == "INT" else float(value)
            except (TypeError, ValueError) as err:
                return _error("invalid_input_type",
                              f"Failed to convert an input value to a {spec.kind} value",
                              f"{name}, {value}, {err}", input_name=name, input_config=config,
                              received_value=value, exception_message=str(err))
            if "min" in opts and number < opts["min"]:
                return _error("value_smaller_than_min",
                              f"Value {number} smaller than min of {opts['min']}", name,
                              input_name=name, input_config=config, received_value=value)
            if "max" in opts and number > opts["max"]:
                return _error("value_bigger_than_max",
                              f"Value {number} bigger than max of {opts['max']}", name,
                              input_name=name, input_config=config, received_value=value)
            return None
        if spec.kind != "COMBO":
            return None
        if node_type.name == "LoadImage":
            if self._input_path(str(value)) is None:
                return _error("custom_validation_failed", "Custom validation failed for node",
                              f"{name} - Invalid image file: {value}", input_name=name)
            return None
        choices = self._choices(spec)
        if value in choices:
            return None
        listed: Any = choices if len(choices) <= 20 else f"(list of length {len(choices)})"
        combo_config = [choices, dict(opts)] if len(choices) <= 20 else None
        return _error("value_not_in_list", "Value not in list",
                      f"{name}: '{value}' not in {listed}",
                      input_name=name, input_config=combo_config, received_value=value)

    def _input_path(self, name: str) -> Path | None:
        folder_type = "input"
        annotated = _ANNOTATED.match(name)
        if annotated:
            name, folder_type = annotated.group("name"), annotated.group("type")
        base = (self._root / folder_type).resolve()
        path = (base / name).resolve()
        return path if path.is_relative_to(base) and path.is_file() else None

    # -- execution -----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work_loop(), name="simulated-comfy-worker")

    async def _stop_worker(self) -> None:
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
                await self._work.wait()
            job = min(self._pending, key=lambda j: j.number)
            self._pending.remove(job)
            self._running = job  # taken and marked running with no await in between
            self._started.set()
            self._interrupt.clear()
            job.timing.started = time.monotonic()
            self.timings.append(job.timing)
            try:
                await self._execute(job)
            except Exception:  # pragma: no cover - a bug in the simulator itself
                log.exception("simulated ComfyUI failed on prompt %s", job.prompt_id)
                if self._running is job:
                    self._running = None
                    self._refuse_ws_prompt = False

    async def _execute(self, job: _Job) -> None:
        pid, sid = job.prompt_id, job.client_id
        messages: list[list[Any]] = []

        async def emit(kind: str, data: dict[str, Any], *, record: bool = False) -> None:
            if record:
                messages.append([kind, data])
            if sid is not None:
                await self._send(kind, data, sid)

        await self._status()
        await emit("execution_start", {"prompt_id": pid, "timestamp": _ms()}, record=True)
        await emit("execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": _ms()},
                   record=True)
        failure = self._failures.pop(0) if self._failures else None
        drop = self._drop_next
        self._drop_next = None

        values: dict[str, tuple[Any, ...]] = {}
        ui_outputs: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        states: dict[str, dict[str, Any]] = {}
        node_id = ""
        current_inputs: dict[str, Any] = {}
        ending: tuple[str, dict[str, Any]]
        try:
            order = self._order(job.prompt, job.outputs)
            share = self.duration / max(len(order), 1)
            fail_at = self._failure_node(job.prompt, order, failure)
            for index, node_id in enumerate(order):
                self._check_interrupt()
                node = job.prompt[node_id]
                current_inputs = {}
                states[node_id] = self._state(pid, node_id, 0.0, 1.0, "running")
                await self._send("progress_state", {"prompt_id": pid, "nodes": dict(states)},
                                 sid)
                self._last_node = node_id
                await emit("executing", {"node": node_id, "display_node": node_id,
                                         "prompt_id": pid})
                if drop is not None and index == 0:
                    self._refuse_ws_prompt = drop
                    await self.drop_websockets()
                inputs = self._resolve(node, values)
                current_inputs = {k: [_format_value(v)] for k, v in inputs.items()}
                steps = int(inputs.get("steps", 0)) if node["class_type"] == "KSampler" else 0
                await self._spend(pid, node_id, share, steps, states, emit, sid)
                if failure is not None and node_id == fail_at:
                    raise _InjectedFailure(failure.message, failure.exception_type)
                result, ui = await asyncio.to_thread(self._run_node, job, node_id, inputs)
                values[node_id] = result
                executed.append(node_id)
                if ui is not None:
                    ui_outputs[node_id] = ui
                    await emit("executed", {"node": node_id, "display_node": node_id,
                                            "output": ui, "prompt_id": pid})
                top = float(states[node_id]["max"])
                states[node_id] = self._state(pid, node_id, top, top, "finished")
                await self._send("progress_state", {"prompt_id": pid, "nodes": dict(states)},
                                 sid)
        except _Interrupted:
            ending = ("execution_interrupted", {
                "prompt_id": pid, "node_id": node_id,
                "node_type": job.prompt.get(node_id, {}).get("class_type"),
                "executed": list(executed), "timestamp": _ms()})
        except Exception as err:
            if isinstance(err, _InjectedFailure):
                exception_type = err.exception_type
                tb = [f'  File "<simulator>", line 1, in {job.prompt[node_id]["class_type"]}\n']
            else:
                exception_type = type(err).__name__
                tb = traceback.format_tb(err.__traceback__)
            ending = ("execution_error", {
                "prompt_id": pid, "node_id": node_id,
                "node_type": job.prompt.get(node_id, {}).get("class_type"),
                "executed": list(executed),
                "exception_message": f"{err}\n", "exception_type": exception_type,
                "traceback": tb, "current_inputs": current_inputs,
                "current_outputs": list(job.prompt), "timestamp": _ms()})
        else:
            ending = ("execution_success", {"prompt_id": pid, "timestamp": _ms()})
        await emit(*ending, record=True)

        success = ending[0] == "execution_success"
        # History and the end of "running" change together, as in PromptQueue.task_done.
        self._history[pid] = {
            "prompt": job.queue_item(),
            "outputs": ui_outputs,
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": messages},
            "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                     for n in ui_outputs},
        }
        self._running = None
        self._last_node = None
        job.timing.ended = time.monotonic()
        job.timing.status = {"execution_success": "success", "execution_error": "error",
                             "execution_interrupted": "interrupted"}[ending[0]]
        self._refuse_ws_prompt = False
        if not self._pending:
            self._idle.set()
        await emit("executing", {"node": None, "prompt_id": pid})
        await self._status()

    @staticmethod
    def _state(pid: str, node_id: str, value: float, top: float, state: str) -> dict[str, Any]:
        return {"value": value, "max": top, "state": state, "node_id": node_id,
                "prompt_id": pid, "display_node_id": node_id, "parent_node_id": None,
                "real_node_id": node_id}

    async def _spend(
        self, pid: str, node_id: str, seconds: float, steps: int,
        states: dict[str, dict[str, Any]],
        emit: Callable[[str, dict[str, Any]], Any], sid: str | None,
    ) -> None:
        """Take this node's share of the prompt's duration, with progress frames for samplers."""
        if steps <= 0:
            await self._sleep(seconds)
            return
        for step in range(1, steps + 1):
            await self._sleep(seconds / steps)
            await emit("progress", {"value": step, "max": steps, "prompt_id": pid, "node": node_id})
            states[node_id] = self._state(pid, node_id, float(step), float(steps), "running")
            await self._send("progress_state", {"prompt_id": pid, "nodes": dict(states)},
                             sid)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interrupt.wait(), seconds)
        self._check_interrupt()

    def _check_interrupt(self) -> None:
        if self._interrupt.is_set():
            self._interrupt.clear()
            raise _Interrupted

    @staticmethod
    def _order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        """Nodes to run, each after the nodes it reads from (only those outputs need)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            if node_id in visiting:
                raise _CycleError(f"Dependency cycle detected at node {node_id}")
            visiting.add(node_id)
            for value in (prompt[node_id].get("inputs") or {}).values():
                if isinstance(value, list) and len(value) == 2:
                    visit(str(value[0]))
            visiting.discard(node_id)
            order.append(node_id)

        for output in sorted(outputs, key=lambda x: (len(x), x)):
            visit(output)
        return order

    @staticmethod
    def _failure_node(prompt: dict[str, Any], order: list[str], failure: _Failure | None) -> str:
        if failure is None:
            return ""
        if failure.node_id in order:
            return str(failure.node_id)
        inner = [n for n in order if not NODE_TYPES[prompt[n]["class_type"]].output_node]
        return inner[-1] if inner else order[0]

    @staticmethod
    def _resolve(node: dict[str, Any], values: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2:
                resolved[name] = values[str(value[0])][value[1]]
            else:
                resolved[name] = value
        return resolved

    # -- node semantics (run in a worker thread) -------------------------------------------------

    def _run_node(
        self, job: _Job, node_id: str, inputs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        kind = job.prompt[node_id]["class_type"]
        if kind == "EmptyImage":
            color = int(inputs["color"])
            rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
            size = (int(inputs["width"]), int(inputs["height"]))
            return ([Image.new("RGB", size, rgb) for _ in range(int(inputs["batch_size"]))],), None
        if kind == "LoadImage":
            path = self._input_path(str(inputs["image"]))
            if path is None:
                raise FileNotFoundError(f"Invalid image file: {inputs['image']}")
            with Image.open(path) as opened:
                loaded = ImageOps.exif_transpose(opened)
                mask = (ImageOps.invert(loaded.getchannel("A")) if "A" in loaded.getbands()
                        else Image.new("L", loaded.size, 0))
                return ([loaded.convert("RGB")], [mask]), None
        if kind == "ImageInvert":
            return ([ImageOps.invert(img) for img in inputs["image"]],), None
        if kind == "ImageBlur":
            radius = int(inputs["blur_radius"])
            if radius == 0:
                return (list(inputs["image"]),), None
            blur = ImageFilter.GaussianBlur(radius=min(float(inputs["sigma"]), radius))
            return ([img.filter(blur) for img in inputs["image"]],), None
        if kind == "ImageBlend":
            factor, mode = float(inputs["blend_factor"]), str(inputs["blend_mode"])
            return ([_blend(a, b, factor, mode) for a, b in
                     zip(inputs["image1"], itertools.cycle(inputs["image2"]))],), None
        if kind == "ImageScale":
            return ([_scale(img, inputs) for img in inputs["image"]],), None
        if kind == "ImageScaleBy":
            factor = float(inputs["scale_by"])
            method = _RESAMPLE.get(str(inputs["upscale_method"]), Image.Resampling.BICUBIC)
            return ([img.resize((round(img.width * factor), round(img.height * factor)), method)
                     for img in inputs["image"]],), None
        if kind == "SaveImage":
            return (), {"images": self._save(job, inputs["images"], str(inputs["filename_prefix"]),
                                             "output")}
        if kind == "PreviewImage":
            prefix = "ComfyUI_temp_" + "".join(self._rng.choice("abcdefghijklmnopqrstupvxyz")
                                               for _ in range(5))
            return (), {"images": self._save(job, inputs["images"], prefix, "temp")}
        if kind == "CheckpointLoaderSimple":
            model = _Model(str(inputs["ckpt_name"]))
            return (model, model, model), None
        if kind == "CLIPTextEncode":
            return (_Cond(str(inputs["text"])),), None
        if kind == "EmptyLatentImage":
            return (_Latent(int(inputs["width"]), int(inputs["height"]),
                            int(inputs["batch_size"])),), None
        if kind == "VAEEncode":
            images = tuple(inputs["pixels"])
            return (_Latent(images[0].width, images[0].height, len(images), base=images),), None
        if kind == "KSampler":
            latent: _Latent = inputs["latent_image"]
            return (_Latent(latent.width, latent.height, latent.batch, seed=int(inputs["seed"]),
                            positive=inputs["positive"].text, negative=inputs["negative"].text,
                            model=inputs["model"].name, denoise=float(inputs["denoise"]),
                            base=latent.base),), None
        if kind == "VAEDecode":
            return (_decode(inputs["samples"]),), None
        raise NotImplementedError(f"the simulator cannot run {kind}")  # pragma: no cover

    def _save(
        self, job: _Job, images: list[Image.Image], filename_prefix: str, folder_type: str
    ) -> list[dict[str, str]]:
        """Write PNGs named like ComfyUI (`<prefix>_00001_.png`, counting on from the folder)."""
        base = (self._root / folder_type).resolve()
        normalized = posixpath.normpath(filename_prefix)
        subfolder, prefix = posixpath.split(normalized)
        folder = (base / subfolder).resolve()
        if not folder.is_relative_to(base):
            raise ValueError("**** ERROR: Saving image outside the output folder is not allowed."
                             f"\n full_output_folder: {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(prefix) + r"_(\d+)_")
        counters = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
        counter = max(counters, default=0) + 1
        info = PngInfo()
        info.add_text("prompt", json.dumps(job.prompt))
        written = []
        for image in images:
            name = f"{prefix}_{counter:05}_.png"
            image.save(folder / name, pnginfo=info, compress_level=4)
            written.append({"filename": name, "subfolder": subfolder, "type": folder_type})
            counter += 1
        return written


def _blend(first: Image.Image, second: Image.Image, factor: float, mode: str) -> Image.Image:
    """ComfyUI's ImageBlend: the second image fitted to the first, mixed in by `factor`."""
    if second.size != first.size:
        second = second.resize(first.size, Image.Resampling.BICUBIC)
    a = np.asarray(first.convert("RGB"), dtype=np.float32) / 255.0
    b = np.asarray(second.convert("RGB"), dtype=np.float32) / 255.0
    if mode == "multiply":
        mixed = a * b
    elif mode == "screen":
        mixed = 1 - (1 - a) * (1 - b)
    elif mode == "overlay":
        mixed = np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    elif mode == "soft_light":
        g = np.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, np.sqrt(a))
        mixed = np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
    elif mode == "difference":
        mixed = a - b
    else:
        mixed = b
    out = np.clip(a * (1 - factor) + mixed * factor, 0, 1)
    return Image.fromarray((out * 255).round().astype(np.uint8), "RGB")


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], Image.Image):
        return f"<{len(value)} image(s) {value[0].width}x{value[0].height}>"
    return str(value)


def _scale(image: Image.Image, inputs: Mapping[str, Any]) -> Image.Image:
    width, height = int(inputs["width"]), int(inputs["height"])
    if width == 0 and height == 0:
        return image.copy()
    if width == 0:
        width = max(1, round(image.width * height / image.height))
    if height == 0:
        height = max(1, round(image.height * width / image.width))
    method = _RESAMPLE.get(str(inputs["upscale_method"]), Image.Resampling.BICUBIC)
    if inputs.get("crop") == "center":
        return ImageOps.fit(image, (width, height), method)
    return image.resize((width, height), method)


def _decode(latent: _Latent) -> list[Image.Image]:
    """Paint the 'generated' images: a pattern from the prompt (palette) and seed (layout)."""
    images = []
    for index in range(latent.batch):
        seed = (latent.seed or 0) + index
        painted = _pattern(seed, latent.positive, latent.negative, latent.model,
                           latent.width, latent.height)
        if latent.base:
            base = latent.base[index % len(latent.base)].convert("RGB")
            base = base.resize((latent.width, latent.height))
            painted = Image.blend(base, painted, max(0.0, min(1.0, latent.denoise)))
        images.append(painted)
    return images


def _pattern(
    seed: int, text: str, negative: str, model: str, width: int, height: int
) -> Image.Image:
    palette_rng = random.Random(f"palette|{model}|{text}|{negative}")
    palette = [tuple(palette_rng.randrange(256) for _ in range(3)) for _ in range(5)]
    rng = random.Random(f"layout|{model}|{text}|{negative}|{seed}")
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize((width, height))
    first, second = rng.sample(palette, 2)
    image = ImageOps.colorize(gradient, first, second).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(6, 14)):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        size = rng.uniform(0.08, 0.5) * min(width, height)
        box = (x0, y0, x0 + size * rng.uniform(0.5, 2.0), y0 + size * rng.uniform(0.5, 2.0))
        color = rng.choice(palette)
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse(box, fill=color)
        elif shape == 1:
            draw.rectangle(box, fill=color)
        else:
            points = [(rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])) for _ in range(3)]
            draw.polygon(points, fill=color)
    return image


async def serve(
    host: str = "127.0.0.1",
    port: int = 8188,
    *,
    duration: float = 0.5,
    installed_models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    root: str | Path | None = None,
) -> None:
    """Run a simulated ComfyUI until cancelled (for a CLI entry point or the demo)."""
    async with SimulatedComfy(host=host, port=port, duration=duration,
                              installed_models=installed_models, root=root) as sim:
        log.info("simulated ComfyUI ready at %s (models: %s)", sim.url,
                 ", ".join(sim.installed_models) or "none")
        await asyncio.Event().wait()
