"""The shipped example pipelines run on the simulated ComfyUI, step after step."""

from __future__ import annotations

import io
from pathlib import Path

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


async def test_cpu_demo_runs_and_seeds_make_different_images():
    spec = load_pipeline_spec(REPO / "pipelines" / "cpu-demo")
    async with SimulatedComfy(duration=0.01) as sim, ComfyClient(sim.url) as client:
        first = await run_chain(client, spec, 0x3366CC, {})
        second = await run_chain(client, spec, 0xCC6633, {})
    assert [im.size for im in first] == [(512, 512), (512, 512), (1024, 1024)]
    for a, b in zip(first, second, strict=True):
        assert a.convert("RGB").getpixel((10, 10)) != b.convert("RGB").getpixel((10, 10))


async def test_sdxl_pipeline_runs_when_its_checkpoint_is_installed():
    spec = load_pipeline_spec(REPO / "pipelines" / "sdxl-refine-upscale")
    variables = {"prompt": "a lighthouse", "negative_prompt": "",
                 "checkpoint": "sd_xl_base_1.0.safetensors"}
    models = {"checkpoints": ["sd_xl_base_1.0.safetensors"]}
    async with (SimulatedComfy(duration=0.01, models=models) as sim,
                ComfyClient(sim.url) as client):
        images = await run_chain(client, spec, 7, variables)
    assert [im.size for im in images] == [(1024, 1024), (1024, 1024), (2048, 2048)]
