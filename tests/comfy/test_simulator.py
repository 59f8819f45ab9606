"""SimulatedComfy speaks the recorded protocol and runs a useful subset of nodes.

The conformance tests send the requests of each recording to the simulator with a plain aiohttp
session (not our client) and compare the answers' shapes (keys and value types, recursively) and
the websocket frame order with the recording.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfy.simulator import SimulatedComfy
from tests.comfy.conftest import (
    CHECKPOINTS,
    invert_workflow,
    load_trace,
    txt2img_workflow,
)

ENDINGS = {"execution_success", "execution_error", "execution_interrupted"}


# -- helpers -----------------------------------------------------------------------------------


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def assert_same_shape(recorded: Any, actual: Any, where: str = "$") -> None:
    """Same keys and value types, recursively. Lists of different lengths compare as the set of
    their item shapes (a traceback has as many lines as it has)."""
    if isinstance(recorded, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r:.80}"
        assert set(actual) == set(recorded), f"{where}: keys {sorted(actual)} != {sorted(recorded)}"
        for key in recorded:
            assert_same_shape(recorded[key], actual[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r:.80}"
        if len(recorded) == len(actual):
            for index, (rec, act) in enumerate(zip(recorded, actual, strict=True)):
                assert_same_shape(rec, act, f"{where}[{index}]")
        else:
            as_text = lambda items: {json.dumps(shape(i), sort_keys=True) for i in items}  # noqa: E731
            assert as_text(actual) == as_text(recorded), f"{where}: item shapes differ"
    else:
        assert type(actual) is type(recorded), (
            f"{where}: {type(actual).__name__} {actual!r:.60} != {type(recorded).__name__}")


class Frames:
    """Collects websocket frames in the background; tests wait for the one they need."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.items: list[dict[str, Any]] = []
        self.binary = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.items.append(json.loads(msg.data))
            else:
                self.binary += 1
            self._changed.set()
        self._changed.set()

    async def until(self, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                for frame in self.items:
                    if test(frame):
                        return frame
                self._changed.clear()
                await self._changed.wait()

    def types(self, *, upto_end: bool = True, status: bool = True) -> list[str]:
        kinds = [f["type"] for f in self.items if status or f["type"] != "status"]
        if upto_end:
            ends = [i for i, kind in enumerate(kinds) if kind in ENDINGS]
            kinds = kinds[: ends[0] + 1] if ends else kinds
        return kinds

    async def close(self) -> None:
        await self.ws.close()
        with suppress(asyncio.CancelledError):
            await self._task


@asynccontextmanager
async def session(sim: SimulatedComfy) -> AsyncIterator[tuple[aiohttp.ClientSession, Frames, str]]:
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{sim.url}/ws", params={"clientId": client_id})
        frames = Frames(ws)
        await frames.until(lambda f: f["type"] == "status")
        try:
            yield http, frames, client_id
        finally:
            await frames.close()


async def post_prompt(
    http: aiohttp.ClientSession, sim: SimulatedComfy, workflow: dict[str, Any], client_id: str
) -> tuple[int, Any]:
    async with http.post(f"{sim.url}/prompt",
                         json={"prompt": workflow, "client_id": client_id}) as resp:
        return resp.status, await resp.json()


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


def png(color: tuple[int, int, int], size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(
    http: aiohttp.ClientSession, sim: SimulatedComfy, data: bytes, name: str,
    subfolder: str = "", overwrite: str = "true",
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    form.add_field("subfolder", subfolder)
    form.add_field("overwrite", overwrite)
    async with http.post(f"{sim.url}/upload/image", data=form) as resp:
        return resp.status, (await resp.json() if resp.status == 200 else None)


async def run_prompt(sim: SimulatedComfy, workflow: dict[str, Any]) -> dict[str, Any]:
    """Run one prompt through raw HTTP; returns its history entry."""
    async with session(sim) as (http, frames, cid):
        status, body = await post_prompt(http, sim, workflow, cid)
        assert status == 200, body
        pid = body["prompt_id"]
        await frames.until(lambda f: f["type"] == "executing" and f["data"]["node"] is None
                           and f["data"]["prompt_id"] == pid)
        _, history = await get_json(http, f"{sim.url}/history/{pid}")
        entry: dict[str, Any] = history[pid]
        return entry


async def view(sim: SimulatedComfy, image: dict[str, str]) -> Image.Image:
    async with aiohttp.ClientSession() as http, http.get(f"{sim.url}/view", params=image) as resp:
        assert resp.status == 200
        return Image.open(io.BytesIO(await resp.read()))


# -- conformance with the recordings -----------------------------------------------------------


@pytest.mark.parametrize("name", ["01_success.json", "02_upload_img2img.json",
                                  "06_runtime_error.json"])
async def test_a_recorded_run_has_the_same_shapes_and_frame_order(
    sim: SimulatedComfy, name: str
) -> None:
    trace = load_trace(name)
    recorded_pid = trace["post_response"]["prompt_id"]
    recorded_entry = trace["history"][recorded_pid]
    workflow = recorded_entry["prompt"][2]
    async with session(sim) as (http, frames, cid):
        if "upload_response" in trace:
            status, answer = await upload(http, sim, png((200, 40, 40)), "parent-7.png",
                                          subfolder="curator")
            assert status == trace["upload_status"]
            assert answer == trace["upload_response"]
        status, body = await post_prompt(http, sim, workflow, cid)
        assert status == trace["post_status"]
        assert_same_shape(trace["post_response"], body)
        pid = body["prompt_id"]
        await frames.until(lambda f: f["type"] in ENDINGS)
        # After the end frame ComfyUI writes history, then says `executing` with node null.
        await frames.until(lambda f: f["type"] == "executing" and f["data"]["node"] is None)
        recorded_frames = trace["ws_messages"]
        assert frames.types() == [f["type"] for f in recorded_frames]
        for index, (rec, act) in enumerate(zip(recorded_frames, frames.items, strict=False)):
            assert_same_shape(rec, act, f"frame[{index}] {rec['type']}")

        status, history = await get_json(http, f"{sim.url}/history/{pid}")
        assert status == trace["history_status"]
        assert list(history) == [pid]
        assert_same_shape(recorded_entry, history[pid])
        assert history[pid]["status"]["status_str"] == recorded_entry["status"]["status_str"]
        assert history[pid]["prompt"][2] == workflow
        assert history[pid]["prompt"][3] == {"client_id": cid}

        for image, recorded_view in zip(
            [i for out in history[pid]["outputs"].values() for i in out["images"]],
            trace.get("view", []), strict=True,
        ):
            async with http.get(f"{sim.url}/view", params=image) as resp:
                assert resp.status == recorded_view["status"]
                assert resp.content_type == recorded_view["content_type"]


def loadimage_workflow(image: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3,
                                                    "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }


@pytest.mark.parametrize(
    ("name", "workflow"),
    [
        ("03_node_errors.json", loadimage_workflow("does-not-exist.png")),
        ("04_unknown_node.json", {"1": {"class_type": "NoSuchNode", "inputs": {}},
                                  "2": invert_workflow()["3"]}),
        ("05_no_outputs.json", {"1": invert_workflow()["1"], "2": invert_workflow()["2"]}),
        ("08_missing_model.json", txt2img_workflow(ckpt="sd_xl_base_1.0.safetensors")),
    ],
)
async def test_rejections_match_the_recorded_bodies(
    sim: SimulatedComfy, name: str, workflow: dict[str, Any]
) -> None:
    trace = load_trace(name)
    sim.installed_models.clear()  # the recording server had no model files
    async with session(sim) as (http, _, cid):
        status, body = await post_prompt(http, sim, workflow, cid)
    assert status == trace["post_status"] == 400
    assert body == trace["post_response"]


async def test_text_for_numbers_and_switches_is_converted_like_recording_09(
    sim: SimulatedComfy,
) -> None:
    """Python's int(), float() and bool(), as ComfyUI applies them: "false" is true."""
    cases = load_trace("09_input_conversion.json")["cases"]
    async with session(sim) as (http, frames, cid):
        for name, case in cases.items():
            status, body = await post_prompt(http, sim, case["sent"], cid)
            assert status == case["post_status"], name
            if status != 200:
                assert body == case["post_response"], name
                continue
            pid = body["prompt_id"]
            await frames.until(lambda f, pid=pid: f["type"] in ENDINGS
                               and f["data"]["prompt_id"] == pid)
            _, history = await get_json(http, f"{sim.url}/history/{pid}")
            assert history[pid]["prompt"][2] == case["history_prompt"], name
            assert_same_shape(case["outputs"], history[pid]["outputs"])


async def test_a_value_no_dropdown_offers_is_refused_where_recording_11_was(
    sim: SimulatedComfy,
) -> None:
    """Classic nodes check dropdowns at POST; nodes written with comfy_api fail when they run."""
    trace = load_trace("11_dropdown_checks.json")
    classic, schema = trace["classic"], trace["comfy_api"]
    recorded_pid = schema["post_response"]["prompt_id"]
    async with session(sim) as (http, frames, cid):
        status, body = await post_prompt(http, sim, classic["sent"], cid)
        assert (status, body) == (classic["post_status"], classic["post_response"])
        status, body = await post_prompt(http, sim, schema["history"][recorded_pid]["prompt"][2],
                                         cid)
        assert status == schema["post_status"] == 200
        end = await frames.until(lambda f: f["type"] in ENDINGS)
    recorded_end = schema["ws_messages"][-1]
    assert end["type"] == recorded_end["type"] == "execution_error"
    for key in ("node_id", "node_type", "exception_type", "exception_message"):
        assert end["data"][key] == recorded_end["data"][key], key


async def test_queue_delete_interrupt_and_misc_like_recording_07(tmp_path: Path) -> None:
    trace = load_trace("07_interrupt_queue_misc.json")
    first_pid = trace["first"]["prompt_id"]
    workflow = json.loads(json.dumps(trace["history"][first_pid]["prompt"][2]))
    workflow["1"]["inputs"].update(width=64, height=64)  # 2048² blurs would only cost time
    async with (
        SimulatedComfy(duration=1.2, root=tmp_path) as sim,
        session(sim) as (http, frames, cid),
    ):
        status, first = await post_prompt(http, sim, workflow, cid)
        assert status == 200
        assert_same_shape(trace["first"], first)
        _, second = await post_prompt(http, sim, workflow, cid)
        assert second["number"] == first["number"] + 1
        await frames.until(lambda f: f["type"] == "executing")

        _, queue = await get_json(http, f"{sim.url}/queue")
        recorded = trace["queue_while_running"]
        assert len(queue["queue_running"]) == recorded["queue_running_len"]
        assert len(queue["queue_pending"]) == recorded["queue_pending_len"]
        running = queue["queue_running"][0]
        assert [type(v).__name__ for v in running] == recorded["running_item_shape"]
        assert running[1] == first["prompt_id"]

        async with http.post(f"{sim.url}/queue", json={"delete": [second["prompt_id"]]}) as resp:
            assert resp.status == trace["delete_status"]
        # As recorded: sent while node 2 runs, it stops the prompt where node 3 starts.
        await frames.until(lambda f: f["type"] == "executing" and f["data"]["node"] == "2")
        async with http.post(f"{sim.url}/interrupt") as resp:
            assert resp.status == trace["interrupt_status"]
        end = await frames.until(lambda f: f["type"] in ENDINGS)
        assert end["type"] == "execution_interrupted"
        recorded_end = trace["ws_messages"][-1]
        assert_same_shape(recorded_end, end)
        assert end["data"]["node_id"] == recorded_end["data"]["node_id"] == "3"
        assert sorted(end["data"]["executed"]) == sorted(recorded_end["data"]["executed"])
        assert frames.types(status=False) == [
            f["type"] for f in trace["ws_messages"] if f["type"] != "status"]

        await frames.until(lambda f: f["type"] == "executing" and f["data"]["node"] is None)
        _, history = await get_json(http, f"{sim.url}/history/{first['prompt_id']}")
        assert_same_shape(trace["history"][first_pid], history[first["prompt_id"]])
        assert history[first["prompt_id"]]["status"]["status_str"] == "error"
        assert (await get_json(http, f"{sim.url}/history/{second['prompt_id']}"))[1] == (
            trace["history_deleted"])
        assert (await get_json(http, f"{sim.url}/queue"))[1] == trace["queue_after"]
        unknown = await get_json(http, f"{sim.url}/history/{uuid.uuid4()}")
        assert unknown == (trace["history_unknown"]["status"], trace["history_unknown"]["body"])
        async with http.get(f"{sim.url}/view", params={"filename": "../main.py"}) as resp:
            assert resp.status == trace["view_traversal_status"]
        async with http.get(f"{sim.url}/view", params={"filename": "missing.png"}) as resp:
            assert resp.status == trace["view_missing_status"]
        _, stats = await get_json(http, f"{sim.url}/system_stats")
        assert_same_shape(trace["system_stats"], stats)

        sim.installed_models.clear()
        differences: list[str] = []
        for node, recorded_info in trace["object_info_subset"].items():
            _, info = await get_json(http, f"{sim.url}/object_info/{node}")
            differences += catalogue_differences(node, info.get(node), recorded_info)
        assert differences == []


def test_every_node_the_simulator_offers_was_recorded_from_the_real_server() -> None:
    """So the comparison above covers the whole catalogue (tests/comfy/record.py lists them)."""
    from comfy.simulator.nodes import NODE_TYPES

    recorded = load_trace("07_interrupt_queue_misc.json")["object_info_subset"]
    assert sorted(set(NODE_TYPES) - set(recorded)) == []


def catalogue_differences(node: str, ours: Any, real: dict[str, Any]) -> list[str]:
    """Where the simulator's /object_info entry for a node strays from the real one."""
    if ours is None:
        return [f"{node}: missing"]
    out = [f"{node}: extra key {key}" for key in set(ours) - set(real)]
    for key in ("name", "display_name", "category", "output", "output_node",
                "output_name", "output_is_list", "python_module", "input_order"):
        if ours.get(key) != real.get(key):
            out.append(f"{node}.{key}: {ours.get(key)!r} != {real.get(key)!r}")
    for section, specs in real["input"].items():
        mine_section = ours["input"].get(section, {})
        if set(mine_section) != set(specs):
            out.append(f"{node}.input.{section}: {sorted(mine_section)} != {sorted(specs)}")
            continue
        if section == "hidden":
            continue
        for input_name, spec in specs.items():
            mine = mine_section[input_name]
            if type(mine[0]) is not type(spec[0]) or (isinstance(spec[0], str)
                                                      and mine[0] != spec[0]):
                out.append(f"{node}.{input_name}: type {mine[0]!r} != {spec[0]!r}")
            limits = {k: v for k, v in (spec[1] if len(spec) > 1 else {}).items()
                      if k in ("default", "min", "max", "step", "options")}
            given = mine[1] if len(mine) > 1 else {}
            if {k: given.get(k) for k in limits} != limits:
                out.append(f"{node}.{input_name}: {given} != {limits}")
    return out


# -- execution semantics -----------------------------------------------------------------------


async def test_save_image_names_files_like_comfyui_and_continues_the_counter(
    sim: SimulatedComfy,
) -> None:
    first = await run_prompt(sim, invert_workflow("curator/run-3/step-1-base/c", batch=2))
    second = await run_prompt(sim, invert_workflow("curator/run-3/step-1-base/c", batch=1))
    names = [i["filename"] for e in (first, second) for i in e["outputs"]["3"]["images"]]
    assert names == ["c_00001_.png", "c_00002_.png", "c_00003_.png"]
    image = first["outputs"]["3"]["images"][0]
    assert image == {"filename": "c_00001_.png", "subfolder": "curator/run-3/step-1-base",
                     "type": "output"}
    assert (sim.root / "output/curator/run-3/step-1-base/c_00003_.png").is_file()
    picture = await view(sim, image)
    assert picture.size == (32, 24)
    assert picture.convert("RGB").getpixel((0, 0)) == (255, 255, 0)  # inverted 0x0000FF
    assert json.loads(picture.info["prompt"])["3"]["class_type"] == "SaveImage"


async def test_preview_images_go_to_temp(sim: SimulatedComfy) -> None:
    workflow = invert_workflow()
    workflow["3"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    entry = await run_prompt(sim, workflow)
    images = entry["outputs"]["3"]["images"]
    assert [i["type"] for i in images] == ["temp", "temp"]
    assert images[0]["filename"].startswith("ComfyUI_temp_")
    assert (await view(sim, images[0])).size == (32, 24)


async def test_txt2img_images_depend_on_seed_and_prompt(sim: SimulatedComfy) -> None:
    async def render(**kwargs: Any) -> bytes:
        entry = await run_prompt(sim, txt2img_workflow(**kwargs))
        picture = await view(sim, entry["outputs"]["9"]["images"][0])
        assert picture.size == (64, 64)
        return picture.convert("RGB").tobytes()

    one = await render(seed=1)
    assert await render(seed=1) == one
    assert await render(seed=2) != one
    assert await render(seed=1, text="a forest") != one


async def test_img2img_and_image_ops_use_the_uploaded_file(sim: SimulatedComfy) -> None:
    async with aiohttp.ClientSession() as http:
        status, answer = await upload(http, sim, png((250, 10, 10), (40, 20)), "p.png", "curator")
    assert status == 200
    assert answer == {"name": "p.png", "subfolder": "curator", "type": "input"}
    workflow = txt2img_workflow(seed=3)
    workflow["10"] = {"class_type": "LoadImage", "inputs": {"image": "curator/p.png"}}
    workflow["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    workflow["3"]["inputs"].update(latent_image=["11", 0], denoise=0.0)
    workflow["12"] = {"class_type": "ImageScaleBy", "inputs": {
        "image": ["8", 0], "upscale_method": "bilinear", "scale_by": 2.0}}
    workflow["13"] = {"class_type": "ImageScale", "inputs": {
        "image": ["12", 0], "upscale_method": "nearest-exact", "width": 10, "height": 0,
        "crop": "disabled"}}
    workflow["9"]["inputs"]["images"] = ["13", 0]
    entry = await run_prompt(sim, workflow)
    picture = (await view(sim, entry["outputs"]["9"]["images"][0])).convert("RGB")
    assert picture.size == (10, 5)
    assert picture.getpixel((5, 2)) == (250, 10, 10)  # denoise 0 keeps the encoded image


async def test_blur_changes_a_detailed_image(sim: SimulatedComfy) -> None:
    source = Image.new("RGB", (20, 20), (0, 0, 0))
    source.paste((255, 255, 255), (10, 0, 20, 20))
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    async with aiohttp.ClientSession() as http:
        await upload(http, sim, buffer.getvalue(), "edge.png")
    entry = await run_prompt(sim, loadimage_workflow("edge.png"))
    picture = (await view(sim, entry["outputs"]["3"]["images"][0])).convert("RGB")
    left, right = picture.getpixel((9, 10)), picture.getpixel((10, 10))
    assert 0 < left[0] < right[0] < 255


async def test_prompts_run_one_at_a_time_in_submission_order(sim: SimulatedComfy) -> None:
    def distinct(color: int) -> dict[str, Any]:  # so none is answered from the cache
        workflow = invert_workflow(batch=1)
        workflow["1"]["inputs"]["color"] = color
        return workflow

    async with session(sim) as (http, _, cid):
        pids = [(await post_prompt(http, sim, distinct(color), cid))[1]["prompt_id"]
                for color in range(4)]
        async with asyncio.timeout(5):
            await sim.wait_idle()
    assert [t.prompt_id for t in sim.timings] == pids
    for before, after in zip(sim.timings, sim.timings[1:], strict=False):
        assert before.ended is not None and after.started is not None
        assert after.started >= before.ended
    assert all(t.status == "success" for t in sim.timings)
    gaps = sim.idle_gaps()
    assert len(gaps) == 3 and all(0 <= g < 0.05 for g in gaps)
    for timing in sim.timings:
        assert timing.ended is not None and timing.started is not None
        assert timing.ended - timing.started >= sim.duration * 0.9


async def test_sampler_progress_frames(sim: SimulatedComfy) -> None:
    async with session(sim) as (http, frames, cid):
        _, body = await post_prompt(http, sim, txt2img_workflow(steps=5), cid)
        await frames.until(lambda f: f["type"] == "execution_success")
    progress = [f["data"] for f in frames.items if f["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (step, 5, "3") for step in range(1, 6)]
    assert all(p["prompt_id"] == body["prompt_id"] for p in progress)


# -- validation --------------------------------------------------------------------------------


async def submit(sim: SimulatedComfy, workflow: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sim.url}/prompt", json={"prompt": workflow}) as resp,
    ):
        if resp.content_type != "application/json":
            return resp.status, await resp.text()
        return resp.status, await resp.json()


async def test_checkpoints_are_checked_against_the_installed_list(sim: SimulatedComfy) -> None:
    status, body = await submit(sim, txt2img_workflow(ckpt="nope.safetensors"))
    assert status == 400
    error = body["node_errors"]["4"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == (
        "ckpt_name: 'nope.safetensors' not in "
        "['sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors']")
    assert (await submit(sim, txt2img_workflow()))[0] == 200


async def test_validation_errors_have_comfyui_shapes(sim: SimulatedComfy) -> None:
    workflow = invert_workflow()
    workflow["1"]["inputs"]["width"] = 0
    del workflow["1"]["inputs"]["color"]
    workflow["2"]["inputs"]["image"] = ["3", 0]  # SaveImage has no outputs: slot 0 raises
    status, body = await submit(sim, workflow)
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    (error,) = body["node_errors"]["2"]["errors"]
    assert (error["type"], error["details"]) == ("exception_during_inner_validation",
                                                 "tuple index out of range")
    workflow["2"]["inputs"]["image"] = ["1", 0]
    status, body = await submit(sim, workflow)
    kinds = [e["type"] for e in body["node_errors"]["1"]["errors"]]
    assert kinds == ["value_smaller_than_min", "required_input_missing"]
    assert body["node_errors"]["1"]["dependent_outputs"] == ["3"]
    txt = txt2img_workflow()
    txt["8"]["inputs"]["samples"] = ["4", 0]
    status, body = await submit(sim, txt)
    assert body["node_errors"]["8"]["errors"][0]["type"] == "return_type_mismatch"
    assert (await submit(sim, {"1": {"inputs": {}}}))[1]["error"]["type"] == "invalid_prompt"


async def test_nodes_no_output_needs_are_not_validated_or_run(sim: SimulatedComfy) -> None:
    workflow = invert_workflow(batch=1)
    workflow["8"] = {"class_type": "KSampler", "inputs": {"seed": 1}}  # broken, but unreached
    entry = await run_prompt(sim, workflow)
    assert entry["status"]["status_str"] == "success"
    assert "8" not in entry["outputs"]


async def test_valid_outputs_run_when_another_output_is_invalid(sim: SimulatedComfy) -> None:
    workflow = invert_workflow(batch=1)
    workflow["4"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}}
    workflow["5"] = {"class_type": "LoadImage", "inputs": {"image": "missing.png"}}
    async with session(sim) as (http, frames, cid):
        status, body = await post_prompt(http, sim, workflow, cid)
        assert status == 200
        assert body["node_errors"]["5"]["dependent_outputs"] == ["4"]
        await frames.until(lambda f: f["type"] == "execution_success")
    assert sim.history_entry(body["prompt_id"])["outputs"].keys() == {"3"}  # type: ignore[index]


# -- files -------------------------------------------------------------------------------------


async def test_upload_rules(sim: SimulatedComfy) -> None:
    async with aiohttp.ClientSession() as http:
        assert (await upload(http, sim, png((1, 2, 3)), "a.png"))[1]["name"] == "a.png"
        assert (await upload(http, sim, png((1, 2, 3)), "a.png", overwrite="false"))[1][
            "name"] == "a.png"  # same bytes: kept as is
        assert (await upload(http, sim, png((9, 9, 9)), "a.png", overwrite="false"))[1][
            "name"] == "a (1).png"
        assert (await upload(http, sim, png((9, 9, 9)), "b.png", subfolder="../x"))[0] == 400
        async with http.get(f"{sim.url}/view",
                            params={"filename": "a.png", "type": "input"}) as resp:
            assert resp.status == 200
        async with http.get(f"{sim.url}/view",
                            params={"filename": "a.png", "subfolder": "../input"}) as resp:
            assert resp.status == 403
        async with http.get(f"{sim.url}/api/object_info/LoadImage") as resp:
            info = await resp.json()
        assert info["LoadImage"]["input"]["required"]["image"][0] == ["a (1).png", "a.png"]


# -- faults and lifecycle ----------------------------------------------------------------------


async def test_fail_next_prompt_reports_an_execution_error(sim: SimulatedComfy) -> None:
    sim.fail_next_prompt("CUDA out of memory")
    entry = await run_prompt(sim, invert_workflow())
    assert entry["status"]["status_str"] == "error"
    kind, data = entry["status"]["messages"][-1]
    assert kind == "execution_error"
    assert (data["node_id"], data["node_type"], data["exception_type"]) == (
        "2", "ImageInvert", "RuntimeError")
    assert data["exception_message"].strip() == "CUDA out of memory"
    assert data["executed"] == ["1"]
    assert (await run_prompt(sim, invert_workflow()))["status"]["status_str"] == "success"


async def test_reject_next_submit_and_http_faults(sim: SimulatedComfy) -> None:
    sim.reject_next_submit({"error": "nope", "node_errors": {}})
    assert await submit(sim, invert_workflow()) == (400, {"error": "nope", "node_errors": {}})
    sim.fail_requests(2, status=503)
    assert (await submit(sim, invert_workflow()))[0] == 503
    async with aiohttp.ClientSession() as http, http.get(f"{sim.url}/queue") as resp:
        assert resp.status == 503
    assert (await submit(sim, invert_workflow()))[0] == 200
    sim.fail_requests(1, status=500, after_handling=True)
    assert (await submit(sim, invert_workflow()))[0] == 500
    async with asyncio.timeout(5):
        await sim.wait_idle()
    assert len(sim.timings) == 2  # the request whose answer was lost still ran


async def test_websockets_can_be_dropped_mid_prompt_and_refused(sim: SimulatedComfy) -> None:
    sim.duration = 0.3
    sim.drop_websockets_mid_prompt()
    async with session(sim) as (http, frames, cid):
        _, body = await post_prompt(http, sim, invert_workflow(), cid)
        async with asyncio.timeout(5):
            await frames._task  # the server closed it
        assert frames.types(upto_end=False)[-1] == "executing"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{sim.url}/ws", params={"clientId": cid})
        assert refused.value.status == 503
        async with asyncio.timeout(5):
            await sim.wait_idle()
        assert sim.history_entry(body["prompt_id"]) is not None
        ws = await http.ws_connect(f"{sim.url}/ws", params={"clientId": cid})  # allowed again
        await ws.close()
    sim.refuse_websockets()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{sim.url}/ws")
    sim.refuse_websockets(False)


async def test_going_down_and_coming_back_on_the_same_port(sim: SimulatedComfy) -> None:
    url = sim.url
    entry = await run_prompt(sim, invert_workflow())
    pid = entry["prompt"][1]
    await sim.go_down()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorError):
            await http.get(f"{url}/queue")
    await sim.come_up()
    assert sim.url == url
    async with aiohttp.ClientSession() as http:
        assert (await get_json(http, f"{url}/history/{pid}"))[1][pid] == entry
    await sim.go_down(crash=True)
    await sim.come_up()
    async with aiohttp.ClientSession() as http:
        assert (await get_json(http, f"{url}/history/{pid}"))[1] == {}
    assert (await run_prompt(sim, invert_workflow()))["prompt"][0] == 0  # numbering restarted


async def test_pause_keeps_prompts_pending(sim: SimulatedComfy) -> None:
    sim.pause()
    status, body = await submit(sim, invert_workflow())
    assert status == 200
    async with asyncio.timeout(5):
        await sim.wait_worker_asleep()  # it has seen the prompt and left it
    assert sim.pending == [body["prompt_id"]] and sim.running is None
    sim.resume()
    async with asyncio.timeout(5):
        await sim.wait_idle()
    assert sim.history_entry(body["prompt_id"]) is not None


async def test_fault_rules_match_paths_count_down_and_delay(sim: SimulatedComfy) -> None:

    sim.fault("/history/*", status=503, body="busy", times=2)
    sim.fault("/queue", method="GET", status=None, delay=0.05, times=None)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.get(f"{sim.url}/api/history/x") as resp:
                assert (resp.status, await resp.text()) == (503, "busy")
        async with http.get(f"{sim.url}/history/x") as resp:
            assert resp.status == 200 and await resp.json() == {}
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.get(f"{sim.url}/queue") as resp:
            assert resp.status == 200
        assert loop.time() - started >= 0.05
        sim.clear_faults()
        async with http.get(f"{sim.url}/system_stats") as resp:
            assert resp.status == 200


# -- model folders and the two combo forms -------------------------------------------------------


async def test_a_simulator_has_no_models_unless_given_some(tmp_path: Path) -> None:
    async with SimulatedComfy(duration=0.01, root=tmp_path) as bare:
        status, body = await submit(bare, txt2img_workflow(ckpt="sd_xl_base_1.0.safetensors"))
        assert status == 400
        assert body["node_errors"]["4"]["errors"][0]["details"] == (
            "ckpt_name: 'sd_xl_base_1.0.safetensors' not in []")
        async with aiohttp.ClientSession() as http:
            assert await get_json(http, f"{bare.url}/models/checkpoints") == (200, [])


async def test_models_endpoints_list_folders_and_files_like_comfyui(tmp_path: Path) -> None:
    models = {"checkpoints": ["b.safetensors", "a.safetensors"], "loras": ["style.safetensors"],
              "upscale_models": ["4x.pth"]}
    async with (SimulatedComfy(duration=0.01, root=tmp_path, models=models) as sim,
                aiohttp.ClientSession() as http):
        status, folders = await get_json(http, f"{sim.url}/models")
        assert status == 200 and folders[:4] == ["checkpoints", "configs", "loras", "vae"]
        assert "upscale_models" in folders and "diffusion_models" in folders
        assert await get_json(http, f"{sim.url}/api/models/checkpoints") == (
            200, ["a.safetensors", "b.safetensors"])
        assert await get_json(http, f"{sim.url}/models/vae") == (200, [])
        async with http.get(f"{sim.url}/models/unet") as resp:  # a legacy name: not a folder
            assert resp.status == 404
        _, info = await get_json(http, f"{sim.url}/object_info")
    loaders = info["CheckpointLoaderSimple"]["input"]["required"]
    assert loaders["ckpt_name"][0] == ["a.safetensors", "b.safetensors"]
    assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == ["style.safetensors"]
    upscaler = info["UpscaleModelLoader"]["input"]["required"]["model_name"]
    assert upscaler == ["COMBO", {"multiselect": False, "options": ["4x.pth"]}]
    with pytest.raises(ValueError, match="no model folder lora"):
        SimulatedComfy(models={"lora": ["x"]})


async def test_object_info_gives_each_node_its_comfyui_combo_form(sim: SimulatedComfy) -> None:
    """Classic nodes (nodes.py) give [[choices], {...}]; comfy_api nodes give
    ["COMBO", {"options": [...]}], as ComfyUI 0.3.64 does."""
    async with aiohttp.ClientSession() as http:
        _, info = await get_json(http, f"{sim.url}/object_info")
    sampler = info["KSampler"]["input"]["required"]["sampler_name"]
    assert isinstance(sampler[0], list) and "euler" in sampler[0]
    assert info["ImageScale"]["input"]["required"]["upscale_method"][0][0] == "nearest-exact"
    blend = info["ImageBlend"]
    assert blend["input"]["required"]["blend_mode"] == [
        "COMBO", {"multiselect": False, "options": list(
            ("normal", "multiply", "screen", "overlay", "soft_light", "difference"))}]
    assert blend["input"]["required"]["image1"] == ["IMAGE", {}]
    assert (blend["deprecated"], blend["experimental"], blend["api_node"]) == (False,) * 3
    assert "deprecated" not in info["KSampler"]
    recorded = load_trace("07_interrupt_queue_misc.json")["object_info_subset"]["ImageBlur"]
    async with aiohttp.ClientSession() as http:
        _, mine = await get_json(http, f"{sim.url}/object_info/ImageBlur")
    assert set(mine["ImageBlur"]) == set(recorded)


# -- strictness checked side by side with a real ComfyUI 0.3.64 ------------------------------


def heavy_workflow(prefix: str = "heavy") -> dict[str, Any]:
    """Four nodes, so there is a node boundary after the one an interrupt arrives in."""
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3,
                                                    "sigma": 1.0}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 3,
                                                    "sigma": 1.0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }


def since(frames: Frames, start: int) -> list[dict[str, Any]]:
    return frames.items[start:]


def ended(pid: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: (f["type"] == "executing" and f["data"]["node"] is None
                      and f["data"].get("prompt_id") == pid)


async def test_frames_go_only_to_the_client_that_submitted(sim: SimulatedComfy) -> None:
    async with session(sim) as (http, mine, cid), session(sim) as (_, other, _other_cid):
        _, body = await post_prompt(http, sim, txt2img_workflow(steps=3), cid)
        await mine.until(ended(body["prompt_id"]))
        await other.until(lambda f: f["type"] == "status"
                          and f["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        assert {"progress_state", "progress", "executing", "executed"} <= set(mine.types())
        assert {f["type"] for f in other.items} == {"status"}

        # Without a client id only progress frames are sent, and to everyone (sid None).
        start_mine, start_other = len(mine.items), len(other.items)
        status, body = await submit(sim, invert_workflow(batch=1))
        assert status == 200
        async with asyncio.timeout(5):
            await sim.wait_idle()
        await other.until(lambda f: f["type"] == "status" and f is not other.items[start_other]
                          and f["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        for frames, start in ((mine, start_mine), (other, start_other)):
            assert {f["type"] for f in since(frames, start)} == {"status", "progress_state"}


async def test_an_identical_prompt_is_answered_from_the_cache(tmp_path: Path) -> None:
    async with SimulatedComfy(duration=0.4, root=tmp_path) as sim, \
            session(sim) as (http, frames, cid):
        _, first = await post_prompt(http, sim, invert_workflow(batch=1), cid)
        await frames.until(ended(first["prompt_id"]))
        first_entry = sim.history_entry(first["prompt_id"])
        assert first_entry is not None

        start = len(frames.items)
        _, again = await post_prompt(http, sim, invert_workflow(batch=1), cid)
        pid = again["prompt_id"]
        await frames.until(ended(pid))
        kinds = [f["type"] for f in since(frames, start)]
        assert kinds == ["status", "status", "execution_start", "execution_cached", "executed",
                         "progress_state", "execution_success", "status", "executing"]
        by_type = {f["type"]: f["data"] for f in since(frames, start)}
        assert by_type["execution_cached"]["nodes"] == ["1", "2", "3"]
        assert by_type["executed"]["output"] == first_entry["outputs"]["3"]
        assert {n: s["state"] for n, s in by_type["progress_state"]["nodes"].items()} == {
            "3": "finished"}
        entry = sim.history_entry(pid)
        assert entry is not None and entry["outputs"] == first_entry["outputs"]
        assert entry["status"]["status_str"] == "success"
        timing = sim.timings[-1]
        assert timing.started is not None and timing.ended is not None
        assert timing.ended - timing.started < 0.1  # no node ran
        saved = sorted(p.name for p in (tmp_path / "output").rglob("*.png"))
        assert saved == ["c_00001_.png"]

        # Another prefix: only SaveImage runs again.
        start = len(frames.items)
        _, other = await post_prompt(http, sim, invert_workflow("elsewhere/d", batch=1), cid)
        await frames.until(ended(other["prompt_id"]))
        cached = next(f for f in since(frames, start) if f["type"] == "execution_cached")
        assert cached["data"]["nodes"] == ["1", "2"]
        executing = [f["data"]["node"] for f in since(frames, start) if f["type"] == "executing"]
        assert executing == ["3", None]

        # The cache keeps what the last prompt used: the first SaveImage is forgotten.
        start = len(frames.items)
        _, back = await post_prompt(http, sim, invert_workflow(batch=1), cid)
        await frames.until(ended(back["prompt_id"]))
        cached = next(f for f in since(frames, start) if f["type"] == "execution_cached")
        assert cached["data"]["nodes"] == ["1", "2"]
        entry = sim.history_entry(back["prompt_id"])
        assert entry is not None
        assert entry["outputs"]["3"]["images"][0]["filename"] == "c_00002_.png"


async def test_a_changed_input_file_is_not_answered_from_the_cache(sim: SimulatedComfy) -> None:
    async with aiohttp.ClientSession() as http:
        await upload(http, sim, png((10, 10, 10)), "p.png")
        first = await run_prompt(sim, loadimage_workflow("p.png"))
        same = await run_prompt(sim, loadimage_workflow("p.png"))
        await upload(http, sim, png((200, 10, 10)), "p.png")
        changed = await run_prompt(sim, loadimage_workflow("p.png"))
    assert same["outputs"] == first["outputs"]
    assert changed["outputs"] != first["outputs"]
    cached = [m for m in changed["status"]["messages"] if m[0] == "execution_cached"]
    assert cached[0][1]["nodes"] == []


async def test_an_interrupt_takes_effect_at_the_next_node_boundary(tmp_path: Path) -> None:
    async with SimulatedComfy(duration=2.0, root=tmp_path) as sim, \
            session(sim) as (http, frames, cid):
        _, body = await post_prompt(http, sim, heavy_workflow(), cid)
        pid = body["prompt_id"]
        await frames.until(lambda f: f["type"] == "executing" and f["data"]["node"] == "2")
        async with http.post(f"{sim.url}/interrupt", json={"prompt_id": pid}) as resp:
            assert resp.status == 200
        end = await frames.until(lambda f: f["type"] in ENDINGS)
        assert end["type"] == "execution_interrupted"
        assert end["data"]["node_id"] == "3"
        assert sorted(end["data"]["executed"]) == ["1", "2"]
        before_end = frames.items[:frames.items.index(end)]
        assert [f["data"]["node"] for f in before_end if f["type"] == "executing"][-1] == "3"

        # Arriving during the last node, it is too late: the prompt succeeds.
        _, body = await post_prompt(http, sim, heavy_workflow("late"), cid)
        await frames.until(lambda f: f["type"] == "executing" and f["data"]["node"] == "4"
                           and f["data"]["prompt_id"] == body["prompt_id"])
        async with http.post(f"{sim.url}/interrupt") as resp:
            assert resp.status == 200
        end = await frames.until(lambda f: f["type"] in ENDINGS
                                 and f["data"]["prompt_id"] == body["prompt_id"])
        assert end["type"] == "execution_success"


async def test_an_interrupt_stops_a_sampler_at_its_next_step(tmp_path: Path) -> None:
    async with SimulatedComfy(duration=0, root=tmp_path,
                              models={"checkpoints": CHECKPOINTS}) as sim, \
            session(sim) as (http, frames, cid):
        # A first prompt fills the cache: in the second only the sampler and what follows it
        # run, its ten steps taking 0.5 s of the 3.5 s.
        _, first = await post_prompt(http, sim, txt2img_workflow(seed=1, steps=10), cid)
        await frames.until(ended(first["prompt_id"]))
        sim.duration = 3.5
        _, body = await post_prompt(http, sim, txt2img_workflow(seed=2, steps=10), cid)
        pid = body["prompt_id"]
        await frames.until(lambda f: f["type"] == "progress" and f["data"]["value"] == 2
                           and f["data"]["prompt_id"] == pid)
        async with http.post(f"{sim.url}/interrupt") as resp:
            assert resp.status == 200
        end = await frames.until(lambda f: f["type"] in ENDINGS and f["data"]["prompt_id"] == pid)
    assert end["type"] == "execution_interrupted"
    assert end["data"]["node_id"] == "3"
    steps = [f["data"]["value"] for f in frames.items
             if f["type"] == "progress" and f["data"]["prompt_id"] == pid]
    assert 2 <= len(steps) < 10


async def test_a_prompt_ends_with_its_end_frame_then_status_then_executing_null(
    sim: SimulatedComfy,
) -> None:
    trace = load_trace("01_success.json")
    async with session(sim) as (http, frames, cid):
        _, body = await post_prompt(http, sim, invert_workflow(), cid)
        pid = body["prompt_id"]
        await frames.until(ended(pid))
        tail = frames.items[-3:]
        assert [f["type"] for f in tail] == ["execution_success", "status", "executing"]
        assert tail[1]["data"] == {"status": {"exec_info": {"queue_remaining": 0}}}
        assert tail[2]["data"] == {"node": None, "prompt_id": pid}
        assert set(tail[0]["data"]) == set(trace["ws_messages"][-1]["data"])
        assert tail[0]["data"]["prompt_id"] == pid

        sim.fail_next_prompt()
        _, body = await post_prompt(http, sim, invert_workflow(batch=1), cid)
        await frames.until(ended(body["prompt_id"]))
        assert [f["type"] for f in frames.items[-3:]] == ["execution_error", "status",
                                                          "executing"]


INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


async def test_bodies_comfyui_cannot_read_answer_500(sim: SimulatedComfy) -> None:
    async with aiohttp.ClientSession() as http:
        for path, data in (("/prompt", b"{not json"), ("/prompt", b""), ("/prompt", b"null"),
                           ("/prompt", b'"prompt"'), ("/prompt", b'{"prompt": [1]}'),
                           ("/prompt", b'{"prompt": {}, "number": "x"}'),
                           ("/prompt", b'{"prompt": {}, "extra_data": [], "client_id": "c"}'),
                           ("/queue", b"nope"), ("/history", b"nope")):
            async with http.post(f"{sim.url}{path}", data=data) as resp:
                assert (resp.status, resp.content_type, await resp.text()) == (
                    500, "text/plain", INTERNAL_ERROR), (path, data)
        async with http.post(f"{sim.url}/interrupt", data=b"nope") as resp:
            assert resp.status == 200  # the one handler that reads JSON defensively
        async with http.post(f"{sim.url}/prompt", json=[1, 2]) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "no_prompt"
        async with http.post(f"{sim.url}/prompt",
                             json={"prompt": invert_workflow(), "number": 7}) as resp:
            assert '"number": 7.0' in await resp.text()


def broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    workflow = invert_workflow()
    change(workflow)
    return workflow


async def test_broken_links_are_refused_like_comfyui(sim: SimulatedComfy) -> None:
    def output_to_missing(w: dict[str, Any]) -> None:
        w["3"]["inputs"]["images"] = ["99", 0]

    status, body = await submit(sim, broken(output_to_missing))
    assert status == 400
    assert body["error"]["details"] == "Exception when validating node: '99'"
    (error,) = body["node_errors"]["3"]["errors"]
    assert (error["type"], error["details"], error["extra_info"]["exception_type"]) == (
        "exception_during_validation", "'99'", "KeyError")
    assert isinstance(error["extra_info"]["traceback"], list)

    cases: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
        (lambda w: w["2"]["inputs"].update(image=["99", 0]), "'99'", "KeyError"),
        (lambda w: w["2"]["inputs"].update(image=["1", 5]), "tuple index out of range",
         "IndexError"),
        (lambda w: w["2"]["inputs"].update(image=["1", "0"]),
         "tuple indices must be integers or slices, not str", "TypeError"),
        (lambda w: w["2"]["inputs"].update(image=[1, 0]), "1", "KeyError"),
        (lambda w: w["2"].pop("inputs"), "'inputs'", "KeyError"),
    ]
    for change, details, exception_type in cases:
        status, body = await submit(sim, broken(change))
        assert status == 400, details
        assert body["error"]["details"] == ""
        # Blamed on the node whose check raised, described by the input that led to it.
        (error,) = body["node_errors"]["2"]["errors"]
        assert error["type"] == "exception_during_inner_validation"
        assert error["details"] == error["extra_info"]["exception_message"] == details
        assert error["extra_info"]["exception_type"] == exception_type
        assert error["extra_info"]["input_name"] == "images"
        assert error["extra_info"]["linked_node"] == ["2", 0]
        assert error["extra_info"]["input_config"] == ["IMAGE", {"tooltip": "The images to save."}]

    status, body = await submit(sim, broken(lambda w: w["2"]["inputs"].update(image=["1", -1])))
    assert status == 200  # Python reads slot -1 as the last output

    status, body = await submit(sim, broken(lambda w: w["3"]["inputs"].pop("images")))
    assert body["error"]["details"] == "Required input is missing: images"
    status, body = await submit(sim, broken(lambda w: w["2"]["inputs"].update(image=["1", 0, 0])))
    assert body["node_errors"]["2"]["errors"][0]["extra_info"]["input_config"] == ["IMAGE", {}]


async def test_queue_changes_announce_status_like_comfyui(sim: SimulatedComfy) -> None:
    sim.pause()
    async with session(sim) as (http, frames, cid):
        pids = [(await post_prompt(http, sim, invert_workflow(batch=1), cid))[1]["prompt_id"]
                for _ in range(3)]
        await frames.until(lambda f: f["type"] == "status"
                           and f["data"]["status"]["exec_info"]["queue_remaining"] == 3)

        async def statuses(body: dict[str, Any]) -> list[int]:
            start = len(frames.items)
            async with http.post(f"{sim.url}/queue", json=body) as resp:
                assert resp.status == 200
            # a marker frame: everything the POST caused was sent before it
            await sim.send_frame("marker", {}, client_id=cid)
            await frames.until(lambda f: f["type"] == "marker" and f in since(frames, start))
            return [f["data"]["status"]["exec_info"]["queue_remaining"]
                    for f in since(frames, start) if f["type"] == "status"]

        assert await statuses({"delete": [pids[0], "unknown"]}) == [2]
        assert await statuses({}) == []
        assert await statuses({"delete": [pids[1]]}) == [1]
        assert await statuses({"delete": [pids[2]]}) == [0, 0]  # the last one wipes the queue
        assert await statuses({"clear": True}) == [0]


async def test_an_older_socket_closing_unregisters_its_client_id(sim: SimulatedComfy) -> None:
    """ComfyUI's websocket handler pops the client id when any socket of that id closes."""
    async with aiohttp.ClientSession() as http:
        old = await http.ws_connect(f"{sim.url}/ws", params={"clientId": "same"})
        assert (await old.receive_json())["type"] == "status"
        await old.send_json({"type": "feature_flags", "data": {}})
        flags = await asyncio.wait_for(old.receive_json(), 5)
        assert flags == {"type": "feature_flags", "data": {"supports_preview_metadata": True,
                                                           "max_upload_size": 100 * 2**20}}
        new = Frames(await http.ws_connect(f"{sim.url}/ws", params={"clientId": "same"}))
        await new.until(lambda f: f["type"] == "status")
        await old.close()
        async with asyncio.timeout(5):
            await sim.wait_unregistered("same")
        await sim.send_frame("marker", {})  # to everyone still registered
        await sim.send_frame("marker", {}, client_id="same")
        await new.close()  # anything sent before the close frame has been read by now
        assert [f["type"] for f in new.items] == ["status"]


async def test_a_late_request_is_handled_even_if_the_client_left(sim: SimulatedComfy) -> None:
    sim.fault("/prompt", method="POST", status=None, delay=0.3)
    body = {"prompt": invert_workflow(), "client_id": "gone", "prompt_id": "late-1"}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(TimeoutError):
            await http.post(f"{sim.url}/prompt", json=body,
                            timeout=aiohttp.ClientTimeout(total=0.05))
    async with asyncio.timeout(5):
        await sim.wait_ended("late-1")
    assert [t.prompt_id for t in sim.timings] == ["late-1"]


async def test_a_prompt_body_that_is_not_json_is_a_500_like_comfyui(sim: SimulatedComfy) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        f"{sim.url}/prompt", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 500
        assert await resp.text() == "500 Internal Server Error\n\nServer got itself in trouble"


async def test_prompt_frames_go_only_to_the_prompt_client(sim: SimulatedComfy) -> None:
    async with session(sim) as (http, mine, cid), session(sim) as (_, other, _):
        _, body = await post_prompt(http, sim, invert_workflow(), cid)
        await mine.until(lambda f: f["type"] == "executing" and f["data"]["node"] is None)
        await sim.send_frame("status", {"status": {}})  # a broadcast, as a marker
        await other.until(lambda f: f["type"] == "status" and f["data"]["status"] == {})
    assert "progress_state" in mine.types()
    assert set(other.types(upto_end=False)) == {"status"}
    assert body["prompt_id"]


async def test_post_history_deletes_and_clears_entries_like_comfyui(sim: SimulatedComfy) -> None:
    """server.py post_history: `clear` (when true) empties the history, then each id of
    `delete` is popped, ids it does not know ignored (PromptQueue.delete_history_item); the
    answer is a bare 200. The outputs stay where they were saved."""
    async with aiohttp.ClientSession() as http:
        ids = []
        for batch in (1, 2, 3):
            _, body = await post_prompt(http, sim, invert_workflow(batch=batch), "cid")
            ids.append(body["prompt_id"])
        for pid in ids:
            await asyncio.wait_for(sim.wait_ended(pid), 5)
        outputs = sorted(p.name for p in (sim.root / "output").rglob("*.png"))

        async def post(path: str, body: Any) -> tuple[int, bytes]:
            async with http.post(f"{sim.url}{path}", json=body) as resp:
                return resp.status, await resp.read()

        recorded = load_trace("10_history_delete.json")
        assert await post("/history", {"delete": [ids[0], "no-such-prompt"]}) == (
            recorded["delete_status"], b"")
        assert recorded["delete_response"] is None  # no body
        assert (await get_json(http, f"{sim.url}/history/{ids[0]}")) == (
            200, recorded["history_deleted"])
        assert (await post("/history", {"nothing": True}))[0] == recorded["unknown_key_status"]
        assert set((await get_json(http, f"{sim.url}/history"))[1]) == set(ids[1:])
        assert await post("/history", {"clear": False, "delete": []}) == (200, b"")
        assert await post("/history", {}) == (200, b"")
        assert await post("/api/history", [ids[1]]) == (200, b"")  # a list: neither key
        assert set((await get_json(http, f"{sim.url}/history"))[1]) == set(ids[1:])
        assert await post("/history", {"clear": True}) == (200, b"")
        assert (await get_json(http, f"{sim.url}/history")) == (200, {})
        assert (await post("/history", 5))[0] == 500  # `in` on a number raises there too
        assert sorted(p.name for p in (sim.root / "output").rglob("*.png")) == outputs
