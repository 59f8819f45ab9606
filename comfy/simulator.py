"""A simulated ComfyUI server on loopback, for tests, benchmarks and the GPU-less demo.

It speaks the protocol recorded from ComfyUI 0.3.64 (see shared/comfyui-traces) and was checked
side by side against a real 0.3.64: the same endpoints, websocket frames in the same order, the
same history, queue and error answers. A useful subset of core nodes really runs (with Pillow),
so images differ by seed, prompt and step:

    EmptyImage, LoadImage, ImageInvert, ImageBlur, ImageScale, ImageScaleBy, SaveImage,
    PreviewImage; and for model workflows CheckpointLoaderSimple, LoraLoader, VAELoader,
    CLIPTextEncode, EmptyLatentImage, KSampler, VAEEncode, VAEDecode, which paint a
    deterministic pattern from the seed and prompt text (img2img blends it over the encoded
    image by `denoise`), and UpscaleModelLoader with ImageUpscaleWithModel (a 2x resize).

Like a fresh ComfyUI it has no model files unless given some (`models=`); `GET /models` and
`GET /models/{folder}` list them.

What it does as ComfyUI does:

- Prompts run one at a time in queue order, each taking `duration` seconds spread over the
  nodes it would run, in ComfyUI's execution order.
- A prompt's frames (`progress_state` and `progress` too) go only to the client id that
  submitted it; `status` goes to everyone. A prompt without a client id sends only its
  progress frames (to everyone) and, if interrupted, `execution_interrupted`.
- Node outputs are cached by input signature (a LoadImage also by the file's hash) for the
  nodes of the last prompt, as ComfyUI's classic cache: an identical prompt lists every node in
  `execution_cached`, re-sends the earlier `executed` output, succeeds at once and its history
  points at the earlier prompt's files; a prompt differing only in SaveImage's prefix re-runs
  only SaveImage.
- An interrupt is a flag seen at the next node's start or a sampler's next step; one raised
  while the last node runs comes too late, and one raised while idle is forgotten.
- A prompt ends with its end frame, then `status`, then `executing` with node null (those two
  after history is written).
- Validation follows execution.validate_prompt, including what raises: a link to a missing node
  or slot is `exception_during_validation` on the output node, or
  `exception_during_inner_validation` on the node whose check raised; widget values are
  converted in place. A body ComfyUI cannot read (not JSON, or the wrong JSON shape where its
  handler indexes it) answers aiohttp's plain-text 500, on POST /prompt, /queue and /history.
- POST /queue sends a `status` frame per deleted prompt (two when the queue empties) and one
  per clear; a websocket's first `feature_flags` message is answered; and when an older socket
  of a reused client id closes, that id is unregistered, so the newer socket gets no frames.

Faults can be injected (see the "fault injection" methods) and every prompt's server-side start
and end times are kept in `timings` for the idle-gap benchmark.

    async with SimulatedComfy(duration=0.5) as sim:
        ...  # sim.url
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

__all__ = ["MODEL_FOLDERS", "NODE_TYPES", "PromptTiming", "SimulatedComfy", "serve"]

log = logging.getLogger(__name__)

# ComfyUI's model folders (folder_paths.folder_names_and_paths), in its order: what GET /models
# lists. A simulator has no model files unless it is given some (`models=`).
MODEL_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
    "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
)

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
    """One required input. `choices` names a combo's values: a tuple, or a dynamic list (a
    model folder's name, or "input_files")."""

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
    # Written with comfy_api's schema (io.ComfyNode): /object_info gives its combos as
    # ["COMBO", {"options": [...]}] and adds output_tooltips, deprecated, experimental, api_node;
    # classic nodes give a combo as [[...], {...}].
    v3: bool = False


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
            python_module="comfy_extras.nodes_post_processing", v3=True),
        _NodeType("ImageBlend", {
            "image1": _In("IMAGE", {}), "image2": _In("IMAGE", {}),
            "blend_factor": _float(0.5, 0.0, 1.0, step=0.01),
            "blend_mode": _In("COMBO", None, BLEND_MODES),
        }, ("IMAGE",), "image/postprocessing", "Image Blend",
            python_module="comfy_extras.nodes_post_processing", v3=True),
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
        _NodeType("LoraLoader", {
            "model": _In("MODEL"), "clip": _In("CLIP"),
            "lora_name": _In("COMBO", {"tooltip": "The name of the LoRA."}, "loras"),
            "strength_model": _float(1.0, -100.0, 100.0, step=0.01),
            "strength_clip": _float(1.0, -100.0, 100.0, step=0.01),
        }, ("MODEL", "CLIP"), "loaders", "Load LoRA"),
        _NodeType("VAELoader", {"vae_name": _In("COMBO", None, "vae")}, ("VAE",), "loaders",
                  "Load VAE"),
        _NodeType("UpscaleModelLoader", {"model_name": _In("COMBO", {}, "upscale_models")},
                  ("UPSCALE_MODEL",), "loaders", "Load Upscale Model",
                  python_module="comfy_extras.nodes_upscale_model", v3=True),
        _NodeType("ImageUpscaleWithModel", {
            "upscale_model": _In("UPSCALE_MODEL", {}), "image": _In("IMAGE", {}),
        }, ("IMAGE",), "image/upscaling", "Upscale Image (using Model)",
            python_module="comfy_extras.nodes_upscale_model", v3=True),
    )
}


def _input_info(node: _NodeType, spec: _In, choices: Callable[[_In], list[str]]) -> list[Any]:
    if node.v3:  # comfy_api's add_to_dict_v1: (io type, as_dict()), options inside
        opts = dict(spec.opts or {})
        if spec.kind == "COMBO":
            opts |= {"multiselect": False, "options": choices(spec)}
        return [spec.kind, opts]
    head: Any = choices(spec) if spec.kind == "COMBO" else spec.kind
    return [head] if spec.opts is None else [head, dict(spec.opts)]


def _object_info(node: _NodeType, choices: Callable[[_In], list[str]]) -> dict[str, Any]:
    """The /object_info entry for one node type, in ComfyUI's shape."""
    required = {name: _input_info(node, spec, choices) for name, spec in node.inputs.items()}
    inputs: dict[str, Any] = {"required": required}
    order: dict[str, list[str]] = {"required": list(node.inputs)}
    if node.hidden:
        inputs["hidden"] = dict(node.hidden)
        order["hidden"] = list(node.hidden)
    info: dict[str, Any] = {
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
    if node.v3:
        info |= {"output_tooltips": [None] * len(node.outputs), "deprecated": False,
                 "experimental": False, "api_node": False}
    return info


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
    number: int | float
    queued: float
    started: float | None = None
    ended: float | None = None
    status: str | None = None  # "success", "error" or "interrupted" once ended


@dataclass
class _Job:
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


_CONVERT: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str,
                                             "BOOLEAN": bool}
_MAX_UPLOAD = 100 * 2**20
_INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


def _internal_error() -> web.Response:
    """What aiohttp answers when a ComfyUI handler raises."""
    return web.Response(status=500, text=_INTERNAL_ERROR)


def _type_name(err: BaseException) -> str:
    kind = type(err)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _is_link(value: Any) -> bool:
    """comfy_execution.graph_utils.is_link."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int | float))


def _has_node(prompt: dict[str, Any], node_id: Any) -> bool:
    try:
        return node_id in prompt
    except TypeError:
        return False


def _hashable(value: Any) -> Any:
    """caching.to_hashable for JSON values (a dict's order does not matter, 1 == 1.0)."""
    if isinstance(value, dict):
        return ("d", frozenset((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("l", tuple(_hashable(v) for v in value))
    return value


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
        models: Mapping[str, Sequence[str]] | None = None,
        installed_models: Sequence[str] = (),
        root: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        """
        duration: seconds each prompt takes, spread over its nodes (tests use ~0.02).
        models: file names per model folder, e.g. {"checkpoints": [...], "loras": [...],
            "vae": [...], "upscale_models": [...]}; folders not named are empty. None: no
            models at all, like a fresh ComfyUI install.
        installed_models: more checkpoint names (the same as models={"checkpoints": ...}).
        root: folder for input/, output/ and temp/; a temporary one (removed on stop) if None.
        seed: seeds the little randomness there is (names of preview files).
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
        self.timings: list[PromptTiming] = []
        self._requested_port = port
        self._port: int | None = None
        self._own_root = root is None
        self._root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="simcomfy-"))
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._dropped: set[int] = set()  # ids of sockets drop_websockets closed
        self._pending: list[_Job] = []
        self._running: _Job | None = None
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
        self._rename_output: Callable[[str], str] | None = None
        self._renamed: dict[tuple[str, str, str], Path] = {}  # reported name -> real file

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
        self._faults.append(_Fault(path, method, status, body, delay, times, after_handling))

    def clear_faults(self) -> None:
        """Forget every rule given to `fault`; requests are answered normally again."""
        self._faults.clear()

    def rename_outputs(self, rename: Callable[[str], str] | None) -> None:
        """Report each file saved from now on under `rename(name)` (history, frames) and serve
        it under that name from /view: a server whose output names are not what a client
        expects (a NUL byte, a very long suffix). None: names are reported as saved again."""
        self._rename_output = rename

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
            web.get("/view", self._view),
            web.post("/upload/image", self._upload),
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
            error = _error("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        valid, error_info, outputs, node_errors = self._validate(prompt)
        extra_data = body["extra_data"] if "extra_data" in body else {}  # noqa: SIM401
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not valid:
            log.info("simulated ComfyUI: invalid prompt: %s", error_info)
            return web.json_response({"error": error_info, "node_errors": node_errors}, status=400)
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
        renamed = self._renamed.get((folder_type, request.query.get("subfolder", ""), filename))
        if renamed is not None:
            return web.FileResponse(renamed)
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

    async def _get_model_folders(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.models))

    async def _get_models(self, request: web.Request) -> web.Response:
        files = self.models.get(request.match_info["folder"])
        if files is None:
            return web.Response(status=404)  # as ComfyUI: unknown folders have no body
        return web.json_response(sorted(files))

    # -- validation (like execution.validate_prompt) ---------------------------------------------

    def _choices(self, spec: _In) -> list[str]:
        if isinstance(spec.choices, str) and spec.choices in self.models:
            return sorted(self.models[spec.choices])
        if spec.choices == "input_files":
            base = self._root / "input"
            return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return list(spec.choices or ())

    def _validate(
        self, prompt: Any
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """(valid, error, outputs to run, node_errors), as execution.validate_prompt builds them.

        What that function does not guard raises here too (the caller answers 500).
        """
        outputs: list[str] = []
        for node_id in prompt:
            node = prompt[node_id]
            if "class_type" not in node:
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
            if node_type.output_node and node_id not in outputs:
                outputs.append(node_id)
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {}

        validated: dict[Any, tuple[bool, list[dict[str, Any]]]] = {}
        good: list[str] = []
        own_errors: list[dict[str, Any]] = []
        node_errors: dict[str, Any] = {}
        for output in outputs:
            try:
                valid, reasons = self._validate_node(prompt, output, validated)
            except Exception as err:
                valid = False
                reasons = [_error("exception_during_validation", "Exception when validating node",
                                  str(err), exception_type=_type_name(err),
                                  traceback=traceback.format_tb(err.__traceback__))]
                validated[output] = (False, reasons)
            if valid:
                good.append(output)
                continue
            own_errors += reasons
            # Every failed node seen so far, not only this output's ancestors (as ComfyUI does).
            for node_id, (ok, errors) in validated.items():
                if not ok and errors:
                    entry = node_errors.setdefault(node_id, {
                        "errors": errors, "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for e in own_errors)
            failed = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                            details)
            return False, failed, [], node_errors
        return True, None, good, node_errors

    def _validate_node(
        self, prompt: dict[str, Any], node_id: Any,
        validated: dict[Any, tuple[bool, list[dict[str, Any]]]],
    ) -> tuple[bool, list[dict[str, Any]]]:
        """execution.validate_inputs: a missing node or slot raises, to be caught a level up."""
        if node_id in validated:
            return validated[node_id]
        validated[node_id] = (True, [])  # provisional: a cycle is reported when it runs
        inputs = prompt[node_id]["inputs"]
        node_type = NODE_TYPES[prompt[node_id]["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True
        for name, spec in node_type.inputs.items():
            head: Any = self._choices(spec) if spec.kind == "COMBO" else spec.kind
            config = [head, dict(spec.opts or {})]
            if name not in inputs:
                errors.append(_error("required_input_missing", "Required input is missing", name,
                                     input_name=name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(_error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name, input_name=name, input_config=config, received_value=value))
                    continue
                source = value[0]
                received = NODE_TYPES[prompt[source]["class_type"]].outputs[value[1]]
                if received != spec.kind:
                    errors.append(_error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({spec.kind})",
                        input_name=name, input_config=config, received_type=received,
                        linked_node=value))
                    continue
                try:
                    if not self._validate_node(prompt, source, validated)[0]:
                        valid = False
                except Exception as err:
                    valid = False
                    message = str(err)
                    validated[source] = (False, [_error(
                        "exception_during_inner_validation", "Exception when validating inner node",
                        message, input_name=name, input_config=config, exception_message=message,
                        exception_type=_type_name(err),
                        traceback=traceback.format_tb(err.__traceback__), linked_node=value)])
                continue
            problem = self._check_widget(node_type, inputs, name, spec, config)
            if problem is not None:
                errors.append(problem)
        result = (valid and not errors, errors)
        validated[node_id] = result
        return result

    def _check_widget(
        self, node_type: _NodeType, inputs: dict[str, Any], name: str, spec: _In,
        config: list[Any],
    ) -> dict[str, Any] | None:
        """Convert the value in place (the queued prompt keeps it converted), then check it."""
        value = inputs[name]
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = inputs[name] = value["__value__"]
            if spec.kind in _CONVERT:
                value = inputs[name] = _CONVERT[spec.kind](value)
        except Exception as err:
            return _error("invalid_input_type",
                          f"Failed to convert an input value to a {spec.kind} value",
                          f"{name}, {value}, {err}", input_name=name, input_config=config,
                          received_value=value, exception_message=str(err))
        if node_type.name == "LoadImage" and spec.kind == "COMBO":
            if self._input_path(str(value)) is None:  # its VALIDATE_INPUTS replaces the list check
                return _error("custom_validation_failed", "Custom validation failed for node",
                              f"{name} - Invalid image file: {value}", input_name=name)
            return None
        opts = spec.opts or {}
        if "min" in opts and value < opts["min"]:
            return _error("value_smaller_than_min",
                          f"Value {value} smaller than min of {opts['min']}", name,
                          input_name=name, input_config=config, received_value=value)
        if "max" in opts and value > opts["max"]:
            return _error("value_bigger_than_max",
                          f"Value {value} bigger than max of {opts['max']}", name,
                          input_name=name, input_config=config, received_value=value)
        if spec.kind != "COMBO":
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

    async def _execute(self, job: _Job) -> None:
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

        await self._status()
        await emit("execution_start", {"prompt_id": pid, "timestamp": _ms()}, record=True)
        keys = {node_id: self._signature(job.prompt, node_id) for node_id in job.prompt}
        used = set(keys.values())
        self._outputs_cache = {k: v for k, v in self._outputs_cache.items() if k in used}
        self._ui_cache = {k: v for k, v in self._ui_cache.items() if k in used}
        cached = [node_id for node_id in job.prompt if keys[node_id] in self._outputs_cache]
        await emit("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _ms()},
                   record=True)

        order, cycle = self._order(job.prompt, job.outputs, lambda n: n in cached)
        full, _ = self._order(job.prompt, job.outputs, lambda n: False)
        share = self.duration / max(len(full), 1)
        to_run = [n for n in order if n not in cached]
        failure = self._failures.pop(0) if self._failures and to_run else None
        fail_at = self._failure_node(job.prompt, to_run, failure)
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
                inputs = self._resolve(node, values)
                current_inputs = {k: [_format_value(v)] for k, v in inputs.items()}
                self._check_interrupt()  # nodes.before_node_execution
                steps = int(inputs.get("steps", 0)) if node["class_type"] == "KSampler" else 0
                await self._spend(pid, node_id, share, steps, states, progress)
                if failure is not None and node_id == fail_at:
                    raise _InjectedFailure(failure.message, failure.exception_type)
                result, ui = await asyncio.to_thread(self._run_node, job, node_id, inputs)
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
            if isinstance(err, _InjectedFailure):
                exception_type = err.exception_type
                tb = [f'  File "<simulator>", line 1, in {job.prompt[node_id]["class_type"]}\n']
            elif isinstance(err, _CycleError):
                exception_type, tb, current_inputs = "graph.DependencyCycleError", [], {}
            else:
                exception_type = _type_name(err)
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

    def _signature(self, prompt: dict[str, Any], node_id: str) -> Any:
        """caching.CacheKeySetInputSignature: the node's inputs and all its ancestors'."""
        ancestors: list[Any] = []
        index: dict[Any, int] = {}

        def walk(current: Any) -> None:
            if not _has_node(prompt, current):
                return
            inputs = prompt[current].get("inputs") or {}
            for name in sorted(inputs):
                if _is_link(inputs[name]) and inputs[name][0] not in index:
                    ancestors.append(inputs[name][0])
                    index[inputs[name][0]] = len(ancestors) - 1
                    walk(inputs[name][0])

        def immediate(current: Any) -> Any:
            if not _has_node(prompt, current):
                return [object()]  # never equal: a missing node is not cached
            node = prompt[current]
            parts: list[Any] = [node["class_type"], self._is_changed(node)]
            inputs = node.get("inputs") or {}
            for name in sorted(inputs):
                value = inputs[name]
                parts.append((name, ("ANCESTOR", index[value[0]], value[1]) if _is_link(value)
                              else value))
            return parts

        walk(node_id)
        return _hashable([immediate(node_id)] + [immediate(a) for a in ancestors])

    def _is_changed(self, node: dict[str, Any]) -> Any:
        """LoadImage's IS_CHANGED: the file's hash, so a replaced upload runs again."""
        if node["class_type"] != "LoadImage":
            return False
        path = self._input_path(str((node.get("inputs") or {}).get("image")))
        return hashlib.sha256(path.read_bytes()).hexdigest() if path else object()

    @staticmethod
    def _order(
        prompt: dict[str, Any], outputs: list[str], is_cached: Callable[[str], bool]
    ) -> tuple[list[str], str | None]:
        """comfy_execution.graph.ExecutionList: the nodes to run, in ComfyUI's order, and the
        node blamed for a dependency cycle (None without one)."""
        pending: dict[str, bool] = {}
        block_count: dict[str, int] = {}
        blocking: dict[str, dict[str, set[Any]]] = {}

        def add_node(first: str) -> None:
            stack, links = [first], []
            while stack:
                current = stack.pop()
                if current in pending:
                    continue
                pending[current] = True
                block_count[current] = 0
                blocking[current] = {}
                for value in (prompt[current].get("inputs") or {}).values():
                    if _is_link(value) and not is_cached(value[0]):
                        stack.append(value[0])
                        links.append((value[0], value[1], current))
            for source, socket, target in links:
                if not is_cached(source):
                    add_node(source)
                    if target not in blocking[source]:
                        blocking[source][target] = set()
                        block_count[target] += 1
                    blocking[source][target].add(socket)

        def is_output(node_id: str) -> bool:
            return NODE_TYPES[prompt[node_id]["class_type"]].output_node

        def pick(ready: list[str]) -> str:
            for node_id in ready:
                if is_output(node_id):
                    return node_id
            for node_id in ready:
                if any(is_output(b) for b in blocking[node_id]):
                    return node_id
            for node_id in ready:
                if any(is_output(c) for b in blocking[node_id] for c in blocking[b]):
                    return node_id
            return ready[0]

        for output in outputs:
            add_node(output)
        order: list[str] = []
        while pending:
            ready = [n for n in pending if block_count[n] == 0]
            if not ready:
                return order, next(iter(pending))
            chosen = pick(ready)
            order.append(chosen)
            del pending[chosen]
            for blocked in blocking.pop(chosen):
                block_count[blocked] -= 1
        return order, None

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
            if _is_link(value):
                resolved[name] = values[value[0]][value[1]]
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
        if kind == "LoraLoader":
            return (inputs["model"], inputs["clip"]), None
        if kind in ("VAELoader", "UpscaleModelLoader"):
            return (_Model(str(inputs.get("vae_name") or inputs.get("model_name"))),), None
        if kind == "ImageUpscaleWithModel":
            return ([img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS)
                     for img in inputs["image"]],), None
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
            if self._rename_output is not None:
                reported = self._rename_output(name)
                self._renamed[(folder_type, subfolder, reported)] = folder / name
                name = reported
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
    models: Mapping[str, Sequence[str]] | None = None,
    root: str | Path | None = None,
) -> None:
    """Run a simulated ComfyUI until cancelled (for a CLI entry point or the demo)."""
    async with SimulatedComfy(host=host, port=port, duration=duration, models=models,
                              root=root) as sim:
        log.info("simulated ComfyUI ready at %s (models: %s)", sim.url,
                 ", ".join(f for files in sim.models.values() for f in files) or "none")
        await asyncio.Event().wait()
