"""Record the ComfyUI protocol from a real server into tests/comfy/recordings/.

    .venv/bin/python -m tests.comfy.record --url http://127.0.0.1:8188 --redact /path/to/ComfyUI

The server needs no model files (start it with `--cpu`). Each scenario posts what a client
would, keeps the websocket frames, history, /view answers and so on, and writes one JSON file
(format in tests/comfy/recordings/README.md). Paths given with `--redact` are replaced by
`<ComfyUI>` so no machine's layout ends up in the repository. It speaks plain aiohttp, not our
client: the recordings are facts to test the client and the simulator against.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

HERE = Path(__file__).resolve().parent / "recordings"
ENDINGS = {"execution_success", "execution_error", "execution_interrupted"}
# Every node type the simulator offers, so its catalogue can be compared with the real one.
OBJECT_INFO_NODES = (
    "EmptyImage", "LoadImage", "SaveImage", "PreviewImage", "ImageInvert", "ImageBlur",
    "ImageBlend", "ImageScale", "ImageScaleBy", "CheckpointLoaderSimple", "CLIPTextEncode",
    "EmptyLatentImage", "KSampler", "VAEDecode", "VAEEncode", "LoraLoader", "VAELoader",
    "UpscaleModelLoader", "ImageUpscaleWithModel", "SolidMask", "GrowMask", "MaskToImage",
    "ImageAddNoise", "ImageQuantize", "ImageSharpen",
)


def invert(prefix: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 128, "height": 128, "batch_size": 2, "color": 255}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def load_blur(image: str, prefix: str = "c") -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3,
                                                    "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def txt2img() -> dict[str, Any]:
    """ComfyUI's default graph, exported in API format."""
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 4, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "a lighthouse at dawn", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "t2i", "images": ["8", 0]}},
    }


def heavy() -> dict[str, Any]:
    """Seconds of CPU work per node, so there is time to look at the queue and interrupt."""
    blur = {"blur_radius": 31, "sigma": 10.0}
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 2048, "height": 2048, "batch_size": 4, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], **blur}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], **blur}},
        "4": {"class_type": "SaveImage",
              "inputs": {"images": ["3", 0], "filename_prefix": "heavy"}},
    }


def grown_mask(width: Any = 32, value: Any = "0.5", tapered: Any = True) -> dict[str, Any]:
    return {
        "1": {"class_type": "SolidMask", "inputs": {"value": value, "width": width, "height": 16}},
        "2": {"class_type": "GrowMask",
              "inputs": {"mask": ["1", 0], "expand": "2", "tapered_corners": tapered}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage",
              "inputs": {"images": ["3", 0], "filename_prefix": "typed"}},
    }


class Session:
    """One client of the server: a websocket and the HTTP requests beside it."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url.rstrip("/")
        self.client_id = str(uuid.uuid4())
        self.frames: list[dict[str, Any]] = []
        self._seen = asyncio.Condition()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Session:
        self._ws = await self.http.ws_connect(f"{self.url}/ws?clientId={self.client_id}")
        self._reader = asyncio.create_task(self._read())
        await self.until(lambda f: f["type"] == "status")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                async with self._seen:
                    self.frames.append(json.loads(message.data))
                    self._seen.notify_all()

    async def until(self, wanted: Callable[[dict[str, Any]], bool]) -> None:
        async with asyncio.timeout(60), self._seen:
            await self._seen.wait_for(lambda: any(wanted(f) for f in self.frames))

    async def until_history(self, pid: str) -> None:
        """Until history has the prompt: ComfyUI writes it just after the end frame, then says
        `executing` with node null."""
        await self.until(lambda f: f["type"] == "executing" and f["data"].get("node") is None
                         and f["data"].get("prompt_id") == pid)

    async def forget(self) -> None:
        """Empty the server's node cache, so every node of the next prompt runs and says so.
        The worker reads the flag between prompts; half a second is ample on an idle server."""
        await self.post("/free", {"free_memory": True})
        await asyncio.sleep(0.5)

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}{path}", params=params) as answer:
            body = await answer.read()
            return answer.status, json.loads(body) if body else None

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(f"{self.url}{path}", json=body) as answer:
            text = await answer.read()
            try:
                return answer.status, json.loads(text) if text else None
            except ValueError:
                return answer.status, text.decode()

    async def prompt(self, workflow: dict[str, Any]) -> tuple[int, Any]:
        return await self.post("/prompt", {"prompt": workflow, "client_id": self.client_id})

    async def views(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        answers = []
        for output in entry.get("outputs", {}).values():
            for image in output.get("images", []):
                async with self.http.get(f"{self.url}/view", params=image) as answer:
                    answers.append({"status": answer.status, "content_type": answer.content_type,
                                    "bytes": len(await answer.read())})
        return answers

    def prompt_frames(self, pid: str) -> list[dict[str, Any]]:
        """Status frames and every frame naming the prompt, in order, up to its end frame."""
        kept: list[dict[str, Any]] = []
        for frame in self.frames:
            if frame["type"] == "status" or (frame.get("data") or {}).get("prompt_id") == pid:
                kept.append(frame)
            if frame["type"] in ENDINGS and frame["data"].get("prompt_id") == pid:
                break
        return kept


async def run_to_end(s: Session, name: str, workflow: dict[str, Any]) -> dict[str, Any]:
    status, answer = await s.prompt(workflow)
    if status != 200:
        raise SystemExit(f"{name}: the server refused the prompt ({status}): {answer}")
    pid = answer["prompt_id"]
    await s.until(lambda f: f["type"] in ENDINGS and f["data"].get("prompt_id") == pid)
    await s.until_history(pid)
    history_status, history = await s.get(f"/history/{pid}")
    record = {"name": name, "post_status": status, "post_response": answer,
              "ws_messages": s.prompt_frames(pid), "history_status": history_status,
              "history": history}
    views = await s.views(history[pid])
    if views:
        record["view"] = views
    return record


async def refused(s: Session, name: str, workflow: dict[str, Any]) -> dict[str, Any]:
    status, answer = await s.prompt(workflow)
    if status == 200:
        raise SystemExit(f"{name}: the server accepted a prompt it should refuse")
    return {"name": name, "post_status": status, "post_response": answer}


def png(size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


async def upload_then_blur(s: Session) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", png(), filename="parent-7.png", content_type="image/png")
    form.add_field("subfolder", "curator")
    form.add_field("overwrite", "true")
    async with s.http.post(f"{s.url}/upload/image", data=form) as answer:
        upload = {"upload_status": answer.status, "upload_response": await answer.json()}
    name = f"{upload['upload_response']['subfolder']}/{upload['upload_response']['name']}"
    record = await run_to_end(s, "upload_then_img2img", load_blur(name,
                                                                   "curator/run-3/step-2-refine/c"))
    return {"name": record.pop("name"), **upload, **record}


async def interrupt_and_queue(s: Session) -> dict[str, Any]:
    _, first = await s.prompt(heavy())
    _, second = await s.prompt(heavy())
    one, two = first["prompt_id"], second["prompt_id"]
    await s.until(lambda f: f["type"] == "executing" and f["data"].get("node") == "2"
                  and f["data"].get("prompt_id") == one)
    _, queue = await s.get("/queue")
    running = queue["queue_running"][0]
    while_running = {"queue_running_len": len(queue["queue_running"]),
                     "queue_pending_len": len(queue["queue_pending"]),
                     "running_item_shape": [type(v).__name__ for v in running],
                     "running_prompt_id": running[1]}
    delete_status, _ = await s.post("/queue", {"delete": [two]})
    interrupt_status, _ = await s.post("/interrupt", {"prompt_id": one})
    await s.until(lambda f: f["type"] in ENDINGS and f["data"].get("prompt_id") == one)
    await s.until_history(one)
    _, history = await s.get(f"/history/{one}")
    _, deleted = await s.get(f"/history/{two}")
    _, after = await s.get("/queue")
    unknown_status, unknown = await s.get("/history/no-such-prompt")
    traversal, _ = await s.get("/view", filename="../secret.png", type="output")
    missing, _ = await s.get("/view", filename="gone.png", type="output")
    _, stats = await s.get("/system_stats")
    subset = {}
    for node in OBJECT_INFO_NODES:
        _, info = await s.get(f"/object_info/{node}")
        subset.update(info)
    return {
        "name": "interrupt_and_queue", "first": first, "second": second,
        "queue_while_running": while_running, "delete_status": delete_status,
        "interrupt_status": interrupt_status, "ws_messages": s.prompt_frames(one),
        "history": history, "history_deleted": deleted, "queue_after": after,
        "history_unknown": {"status": unknown_status, "body": unknown},
        "view_traversal_status": traversal, "view_missing_status": missing,
        "system_stats": stats, "object_info_subset": subset,
    }


async def input_conversion(s: Session) -> dict[str, Any]:
    """What the server does with text where a number or a switch is wanted."""
    cases = {"numbers_from_text": grown_mask(width="32"),
             "float_text_for_int": grown_mask(width="7.5"),
             "word_for_boolean": grown_mask(tapered="false")}
    answers: dict[str, Any] = {}
    for case, workflow in cases.items():
        status, answer = await s.prompt(workflow)
        entry: dict[str, Any] = {"sent": workflow, "post_status": status, "post_response": answer}
        if status == 200:
            pid = answer["prompt_id"]
            await s.until(lambda f, pid=pid: f["type"] in ENDINGS
                          and f["data"].get("prompt_id") == pid)
            await s.until_history(pid)
            _, history = await s.get(f"/history/{pid}")
            entry["history_prompt"] = history[pid]["prompt"][2]
            entry["outputs"] = history[pid]["outputs"]
        answers[case] = entry
    return {"name": "input_conversion", "cases": answers}


async def history_delete(s: Session) -> dict[str, Any]:
    kept = await run_to_end(s, "kept", invert("history/kept"))
    gone = await run_to_end(s, "gone", invert("history/gone"))
    kept_id = kept["post_response"]["prompt_id"]
    gone_id = gone["post_response"]["prompt_id"]
    status, answer = await s.post("/history", {"delete": [gone_id, "no-such-prompt"]})
    _, after_gone = await s.get(f"/history/{gone_id}")
    _, after_kept = await s.get(f"/history/{kept_id}")
    bad_status, bad_answer = await s.post("/history", {"nothing": True})
    outputs = after_kept[kept_id]["outputs"]
    view_after = await s.views(gone["history"][gone_id])
    return {"name": "history_delete", "kept": kept_id, "deleted": gone_id,
            "delete_status": status, "delete_response": answer,
            "history_deleted": after_gone, "history_kept_outputs": outputs,
            "view_after_delete": view_after,
            "unknown_key_status": bad_status, "unknown_key_response": bad_answer}


def bad_choice(class_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": class_type, "inputs": inputs},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }


async def dropdown_checks(s: Session) -> dict[str, Any]:
    """A value no dropdown offers: a classic node refuses it at POST; a node written with
    comfy_api takes the prompt and fails when it runs."""
    sent = bad_choice("ImageScale", {"image": ["1", 0], "upscale_method": "sideways",
                                     "width": 8, "height": 8, "crop": "disabled"})
    classic = {**await refused(s, "classic", sent), "sent": sent}
    schema = await run_to_end(s, "comfy_api", bad_choice("ImageBlend", {
        "image1": ["1", 0], "image2": ["1", 0], "blend_factor": 0.5, "blend_mode": "sideways"}))
    return {"name": "dropdown_checks", "classic": classic, "comfy_api": schema}


SCENARIOS: dict[str, Callable[[Session], Any]] = {
    "01_success.json": lambda s: run_to_end(s, "success_empty_invert",
                                            invert("curator/run-3/step-1-base/c")),
    "02_upload_img2img.json": upload_then_blur,
    "03_node_errors.json": lambda s: refused(s, "invalid_missing_input_file",
                                             load_blur("does-not-exist.png")),
    "04_unknown_node.json": lambda s: refused(s, "invalid_unknown_node", {
        "1": {"class_type": "NoSuchNode", "inputs": {}},
        "2": invert("c")["3"]}),
    "05_no_outputs.json": lambda s: refused(s, "invalid_no_outputs",
                                            {"1": invert("c")["1"], "2": invert("c")["2"]}),
    "06_runtime_error.json": lambda s: run_to_end(s, "runtime_error_scale_to_zero", {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageScaleBy",
              "inputs": {"image": ["1", 0], "upscale_method": "lanczos", "scale_by": 0.01}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "err"}},
    }),
    "07_interrupt_queue_misc.json": interrupt_and_queue,
    "08_missing_model.json": lambda s: refused(s, "invalid_missing_checkpoint_txt2img",
                                               txt2img()),
    "09_input_conversion.json": input_conversion,
    "10_history_delete.json": history_delete,
    "11_dropdown_checks.json": dropdown_checks,
}


SITE_PACKAGES = re.compile(r"/[^\s\"']*/site-packages")


def redacted(value: Any, paths: list[str]) -> Any:
    if isinstance(value, str):
        value = SITE_PACKAGES.sub("<site-packages>", value)
        for path in paths:
            value = value.replace(path, "<ComfyUI>")
        return value
    if isinstance(value, dict):
        return {k: redacted(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, paths) for v in value]
    return value


async def record(url: str, out: Path, only: list[str], paths: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        for name, scenario in SCENARIOS.items():
            if only and not any(o in name for o in only):
                continue
            async with Session(http, url) as s:
                await s.forget()
                data = redacted(await scenario(s), paths)
            if "system_stats" in data:
                data["system_stats"]["system"]["argv"] = ["main.py", "--cpu"]
            (out / name).write_text(json.dumps(data, indent=1) + "\n")
            print(f"{name}: recorded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--redact", action="append", default=[],
                        help="a path to replace by <ComfyUI> (repeat for more)")
    parser.add_argument("only", nargs="*", help="record only scenarios whose file name has this")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(record(options.url, options.out, options.only,
                       sorted(options.redact, key=len, reverse=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
