"""The nodes of pipelines/cpu-demo refuse and accept what ComfyUI 0.3.64 does (their /object_info
entries are compared with the real server's in test_simulator.py)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from comfy.client import ComfyClient
from comfy.simulator import SimulatedComfy
from orchestration.pipelines import load_pipeline_spec
from tests.comfy.conftest import load_trace

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_pipeline_uses_only_nodes_a_model_free_comfyui_has():
    spec = load_pipeline_spec(REPO / "pipelines" / "cpu-demo")
    used = {node["class_type"] for step in spec.steps for node in step.workflow.values()}
    recorded = load_trace("07_interrupt_queue_misc.json")["object_info_subset"]
    assert used <= set(recorded)


BASE = {"class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}


@pytest.mark.parametrize(("node", "refused"), [
    ({"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": -1, "strength": 0.5}},
     "value_smaller_than_min"),
    ({"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 1, "strength": 1.5}},
     "value_bigger_than_max"),
    ({"class_type": "ImageQuantize", "inputs": {"image": ["1", 0], "colors": 0, "dither": "none"}},
     "value_smaller_than_min"),
    ({"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "cubic",
                                             "width": 8, "height": 8, "crop": "disabled"}},
     "value_not_in_list"),
    ({"class_type": "ImageSharpen", "inputs": {"image": ["1", 0], "sharpen_radius": 32,
                                               "sigma": 1.0, "alpha": 1.0}},
     "value_bigger_than_max"),
    ({"class_type": "ImageSharpen", "inputs": {"image": ["1", 0], "sharpen_radius": 2,
                                               "sigma": 1.0}},
     "required_input_missing"),
])
async def test_inputs_out_of_range_are_refused_as_comfyui_refuses_them(tmp_path, node, refused):
    prompt = {"1": BASE, "2": node,
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                          "filename_prefix": "x"}}}
    async with SimulatedComfy(duration=0.01, root=tmp_path) as sim, \
            aiohttp.ClientSession() as http, \
            http.post(f"{sim.url}/prompt", json={"prompt": prompt}) as resp:
        answer = await resp.json()
    assert resp.status == 400
    assert [e["type"] for e in answer["node_errors"]["2"]["errors"]] == [refused]


async def test_a_comfy_api_combo_takes_any_value_and_fails_when_it_runs(tmp_path):
    """ImageQuantize and ImageBlend declare "COMBO" types, which ComfyUI does not check."""
    prompt = {"1": BASE,
              "2": {"class_type": "ImageBlend", "inputs": {"image1": ["1", 0], "image2": ["1", 0],
                                                           "blend_factor": 0.5,
                                                           "blend_mode": "hard_light"}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                          "filename_prefix": "x"}}}
    async with SimulatedComfy(duration=0.01, root=tmp_path) as sim, \
            ComfyClient(sim.url) as client:
        prompt_id = await client.submit(prompt)
        result = await client.follow(prompt_id)
    assert result.status == "error" and "Unsupported blend mode: hard_light" in result.error
