"""A node type is one declaration: a server given it lists it, validates it and runs it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from comfy.simulator import Input, NodeContext, SimulatedComfy, node


@node("ImageGrayscale", {"image": Input("IMAGE")}, ("IMAGE",), "image", "Grayscale")
def grayscale(context: NodeContext, inputs: dict[str, Any]) -> Any:
    return ([img.convert("L").convert("RGB") for img in inputs["image"]],), None


PROMPT = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0xFF0000}},
    "2": {"class_type": "ImageGrayscale", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gray"}},
}


async def test_a_node_declared_once_is_listed_validated_and_run(tmp_path: Path) -> None:
    async with SimulatedComfy(duration=0.01, root=tmp_path / "with", nodes=[grayscale]) as sim, \
            SimulatedComfy(duration=0.01, root=tmp_path / "without") as plain, \
            aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}/object_info/ImageGrayscale") as resp:
            info = (await resp.json())["ImageGrayscale"]
        assert info["input"]["required"] == {"image": ["IMAGE"]}
        assert info["output"] == ["IMAGE"] and info["display_name"] == "Grayscale"

        async with http.post(f"{sim.url}/prompt", json={"prompt": PROMPT}) as resp:
            assert resp.status == 200
            prompt_id = (await resp.json())["prompt_id"]
        async with asyncio.timeout(5):
            await sim.wait_idle()
        entry = sim.history_entry(prompt_id)
        assert entry is not None and entry["status"]["status_str"] == "success"
        saved = entry["outputs"]["3"]["images"][0]
        async with http.get(f"{sim.url}/view", params=saved) as resp:
            image = Image.open(io.BytesIO(await resp.read()))
        assert image.convert("RGB").getpixel((0, 0)) == (76, 76, 76)  # red, as luminance

        async with http.post(f"{sim.url}/prompt", json={"prompt": {
                **PROMPT, "2": {"class_type": "ImageGrayscale", "inputs": {}}}}) as resp:
            refused = await resp.json()
        assert resp.status == 400
        assert refused["node_errors"]["2"]["errors"][0]["type"] == "required_input_missing"

        async with http.post(f"{plain.url}/prompt", json={"prompt": PROMPT}) as resp:
            unknown = await resp.json()
        assert resp.status == 400
        assert "ImageGrayscale does not exist" in unknown["error"]["message"]
