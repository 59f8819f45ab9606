"""The shipped example pipelines run on the simulated ComfyUI, step after step."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image

from comfy.client import ComfyClient
from comfy.simulator import SimulatedComfy
from comfy.workflow import render_workflow
from orchestration.pipelines import load_pipeline_spec
from tests.comfy.conftest import run_prompt

REPO = Path(__file__).resolve().parents[2]


async def run_chain(client: ComfyClient, spec, seed: int, extra: dict) -> list[Image.Image]:
    images, parent = [], None
    for step in spec.steps:
        values = {"seed": seed, "output_prefix": f"run-0001/{step.slug}/job-{seed}", **extra}
        if parent is not None:
            values["parent_image"] = await client.upload_image(
                parent, f"parent-{seed}-{step.position}.png", subfolder="curator")
        result = await run_prompt(client, render_workflow(step.workflow, values))
        assert result.status == "success", result.error
        [out] = result.saved_images
        assert out.subfolder == f"run-0001/{step.slug}"
        parent = await client.download(out)
        images.append(Image.open(io.BytesIO(parent)))
    return images


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((128, 128)), dtype=np.float64)


def distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0–255), at one size."""
    return float(np.abs(pixels(a) - pixels(b)).mean())


async def test_cpu_demo_images_have_shapes_that_follow_seed_tint_and_parent():
    spec = load_pipeline_spec(REPO / "pipelines" / "cpu-demo")
    tint = {"tint": 0x3366CC}
    async with SimulatedComfy(duration=0.01) as sim, ComfyClient(sim.url) as client:
        first = await run_chain(client, spec, 11, tint)
        second = await run_chain(client, spec, 12, tint)
        warm = await run_chain(client, spec, 11, {"tint": 0xCC6633})
    assert [im.size for im in first] == [(512, 512), (512, 512), (1024, 1024)]
    for image in (*first, *second):
        assert pixels(image).std() > 25  # blobs of several colours, not one flat colour
    for a, b in zip(first, second, strict=True):
        assert distance(a, b) > 20  # another seed, another composition
    for parent, child in itertools.pairwise(first):
        stranger = second[first.index(child)]
        assert distance(parent, child) < distance(stranger, child) / 1.5
    red_minus_blue = [pixels(im)[..., 0].mean() - pixels(im)[..., 2].mean() for im in first]
    assert all(pixels(im)[..., 0].mean() - pixels(im)[..., 2].mean() > d + 60
               for im, d in zip(warm, red_minus_blue, strict=True))


async def test_sdxl_pipeline_runs_when_its_checkpoint_is_installed():
    spec = load_pipeline_spec(REPO / "pipelines" / "sdxl-refine-upscale")
    variables = {"prompt": "a lighthouse", "negative_prompt": "",
                 "checkpoint": "sd_xl_base_1.0.safetensors"}
    models = {"checkpoints": ["sd_xl_base_1.0.safetensors"]}
    async with (SimulatedComfy(duration=0.01, models=models) as sim,
                ComfyClient(sim.url) as client):
        images = await run_chain(client, spec, 7, variables)
    assert [im.size for im in images] == [(1024, 1024), (1024, 1024), (2048, 2048)]
