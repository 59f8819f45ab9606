"""Fixtures for the ComfyUI client and simulator tests: recordings, a simulator, fast clients."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from comfy.client import ComfyClient, ProgressCallback, PromptResult
from comfy.simulator import SimulatedComfy

# Made by tests/comfy/record.py from a real ComfyUI; facts to test against, not fixtures to edit.
TRACES = Path(__file__).resolve().parent / "recordings"


def trace_files() -> list[Path]:
    """The protocol recordings: `NN_<what happened>.json`."""
    return sorted(TRACES.glob("[0-9][0-9]_*.json"))


def load_trace(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRACES / name).read_text())
    return data


def fast_client(url: str, **overrides: Any) -> ComfyClient:
    """A client with millisecond backoffs so failure paths stay quick."""
    options: dict[str, Any] = {
        "retry_attempts": 3,
        "retry_wait": 0.01,
        "retry_max_wait": 0.05,
        "request_timeout": 5.0,
        "connect_timeout": 2.0,
        "poll_interval": 0.05,
        "idle_poll_interval": 2.0,
        "history_grace": 1.0,
    }
    options.update(overrides)
    return ComfyClient(url, **options)


# A simulator has no models unless given some; these tests' model workflows use these.
CHECKPOINTS = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimulatedComfy]:
    async with SimulatedComfy(duration=0.02, root=tmp_path / "comfy", seed=1,
                              models={"checkpoints": CHECKPOINTS}) as server:
        yield server


@pytest.fixture
async def client(sim: SimulatedComfy) -> AsyncIterator[ComfyClient]:
    async with fast_client(sim.url) as comfy:
        yield comfy


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class LogWatch(logging.Handler):
    """Keeps a logger's lines and wakes a test when a line it waits for is logged: the code's
    own word that something happened, awaited instead of polled for."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        for waiter in list(self._waiters):
            text, times, done = waiter
            if self.count(text) >= times:
                self._waiters.remove(waiter)
                if not done.done():
                    done.set_result(None)

    def count(self, text: str) -> int:
        return sum(text in message for message in self.messages)

    async def wait_for(self, text: str, times: int = 1) -> None:
        """Until `times` lines containing `text` have been logged (wrap in asyncio.timeout)."""
        if self.count(text) >= times:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((text, times, done))
        await done


@contextmanager
def watch_log(name: str = "comfy.client") -> Iterator[LogWatch]:
    """Every line the logger `name` logs (DEBUG up) while inside."""
    logger = logging.getLogger(name)
    watch, level = LogWatch(), logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


# Workflows used across the tests, in ComfyUI's API format.

def invert_workflow(prefix: str = "curator/run-3/step-1-base/c", batch: int = 2) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 32, "height": 24, "batch_size": batch, "color": 255}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def txt2img_workflow(
    seed: int = 1, text: str = "a lighthouse at dawn", ckpt: str = "sd_xl_base_1.0.safetensors",
    steps: int = 4, size: int = 64,
) -> dict[str, Any]:
    """ComfyUI's default workflow, exported in API format."""
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 8, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "t2i", "images": ["8", 0]}},
    }


async def run_prompt(
    client: ComfyClient,
    workflow: dict[str, Any],
    on_progress: ProgressCallback | None = None,
    *,
    prompt_id: str | None = None,
) -> PromptResult:
    """Submit and follow to the end, as the scheduler does."""
    return await client.follow(await client.submit(workflow, prompt_id=prompt_id), on_progress)


async def post_to_comfy(url: str, path: str, body: dict[str, Any]) -> None:
    """Post to ComfyUI the way a person at its web page would (delete from the queue,
    interrupt): the bot itself never does."""
    async with aiohttp.ClientSession() as http, http.post(f"{url}{path}", json=body) as answer:
        assert answer.status == 200, await answer.text()
