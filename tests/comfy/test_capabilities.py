"""What a ComfyUI has, read from /object_info and /models, and the check of workflows against it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from comfy.capabilities import (
    PARENT_IMAGE,
    capabilities_from,
    check_steps,
    check_workflow,
    combo_choices,
    fetch_capabilities,
)
from comfy.simulator import SimulatedComfy
from comfy.values import typed_values
from tests.comfy.conftest import fast_client, load_trace, txt2img_workflow

URL = "http://gpu2:8188"


def test_both_combo_forms_are_read() -> None:
    assert combo_choices([["a", "b"], {"tooltip": "x"}]) == ("a", "b")
    assert combo_choices([[]]) == ()
    assert combo_choices(["COMBO", {"multiselect": False, "options": ["4x.pth"]}]) == ("4x.pth",)
    assert combo_choices(["COMBO", {}]) == ()
    assert combo_choices(["INT", {"default": 1}]) is None
    assert combo_choices(["IMAGE"]) is None


def test_the_recorded_object_info_is_parsed() -> None:
    recorded = load_trace("07_interrupt_queue_misc.json")["object_info_subset"]
    caps = capabilities_from(URL + "/", recorded, {"checkpoints": [], "loras": None})
    assert caps.url == URL
    assert set(caps.nodes) == set(recorded)
    assert caps.nodes["CheckpointLoaderSimple"] == {"ckpt_name": ()}
    assert caps.nodes["LoadImage"] == {"image": ()}  # an empty input folder
    assert "dpmpp_2m" in caps.nodes["KSampler"]["sampler_name"]
    assert caps.nodes["KSampler"]["scheduler"][:3] == ("simple", "sgm_uniform", "karras")
    assert caps.nodes["ImageBlur"] == {}  # no dropdowns
    assert caps.models == {"checkpoints": ()}  # a folder the server lacks is left out


def test_a_missing_checkpoint_is_one_line_naming_what_the_worker_has() -> None:
    recorded = load_trace("07_interrupt_queue_misc.json")["object_info_subset"]
    bare = capabilities_from(URL, recorded, {"checkpoints": []})
    assert check_workflow(txt2img_workflow(), bare, "step 1 (base)") == [
        "step 1 (base) needs checkpoint 'sd_xl_base_1.0.safetensors'; ComfyUI at "
        "http://gpu2:8188 has: none"]
    info = {**recorded, "CheckpointLoaderSimple": {"input": {"required": {
        "ckpt_name": [["juggernaut_xl.safetensors"], {}]}}}}
    other = capabilities_from(URL, info, {"checkpoints": ["juggernaut_xl.safetensors"]})
    assert check_workflow(txt2img_workflow(), other, "step 1 (base)") == [
        "step 1 (base) needs checkpoint 'sd_xl_base_1.0.safetensors'; ComfyUI at "
        "http://gpu2:8188 has: juggernaut_xl.safetensors"]
    assert check_workflow(txt2img_workflow(ckpt="juggernaut_xl.safetensors"), other, "s") == []


def _caps(**models: list[str]) -> Any:
    info = {
        "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
        "LoraLoader": {"input": {"required": {"lora_name": [models.get("loras", []), {}],
                                               "strength_model": ["FLOAT", {}]}}},
        "UpscaleModelLoader": {"input": {"required": {"model_name": [
            "COMBO", {"multiselect": False, "options": models.get("upscale_models", [])}]}}},
        "KSampler": {"input": {"required": {"sampler_name": [[f"s{i}" for i in range(20)]],
                                             "seed": ["INT", {}]}}},
        "SaveImage": {"input": {"required": {"filename_prefix": ["STRING", {}]}}},
    }
    return capabilities_from(URL, info, dict(models))


def test_unknown_nodes_bad_choices_and_each_kind_of_model_are_named() -> None:
    workflow = {
        "1": {"class_type": "LoraLoader", "inputs": {"lora_name": "film.safetensors",
                                                     "strength_model": 0.7}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-Ultra.pth"}},
        "3": {"class_type": "KSampler", "inputs": {"sampler_name": "euler", "seed": 5}},
        "4": {"class_type": "FaceDetailer", "inputs": {}},
        "5": {"class_type": "FaceDetailer", "inputs": {}},
    }
    caps = _caps(loras=["anime.safetensors"], upscale_models=[])
    assert check_workflow(workflow, caps, "step 2 (refine)") == [
        "step 2 (refine) needs LoRA 'film.safetensors'; ComfyUI at http://gpu2:8188 has: "
        "anime.safetensors",
        "step 2 (refine) needs upscale model '4x-Ultra.pth'; ComfyUI at http://gpu2:8188 has: "
        "none",
        "step 2 (refine): KSampler (#3) sampler_name 'euler' is not a choice on ComfyUI at "
        "http://gpu2:8188; it offers: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, … "
        "(20 in all)",
        "step 2 (refine) uses node FaceDetailer (#4); ComfyUI at http://gpu2:8188 does not "
        "have it (a custom node to install there?)",
        "step 2 (refine) uses node FaceDetailer (#5); ComfyUI at http://gpu2:8188 does not "
        "have it (a custom node to install there?)",
    ]


def test_steps_are_checked_with_the_runs_values_and_the_parent_image_is_skipped() -> None:
    step1 = SimpleNamespace(position=1, name="base", workflow={
        "1": {"class_type": "LoraLoader", "inputs": {"lora_name": "{{lora}}"}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "{{output_prefix}}"}}})
    step2 = SimpleNamespace(position=2, name="refine", workflow={
        "1": {"class_type": "LoadImage", "inputs": {"image": "{{parent_image}}"}},
        "2": {"class_type": "KSampler", "inputs": {"sampler_name": "s1", "seed": "{{seed}}"}}})
    caps = _caps(loras=["anime.safetensors"])
    assert check_steps([step1, step2], {"lora": "anime.safetensors"}, caps) == []
    assert check_steps([step1, step2], {"lora": "film.safetensors"}, caps) == [
        "step 1 (base) needs LoRA 'film.safetensors'; ComfyUI at http://gpu2:8188 has: "
        "anime.safetensors"]
    assert check_steps([step1, step2], {}, caps) == []  # no value yet: checked at run start
    fixed = {"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}}}
    assert check_workflow(fixed, caps, "s")[0].startswith("s: LoadImage (#1) image")
    assert check_workflow({"1": {"class_type": "LoadImage", "inputs": {"image": PARENT_IMAGE}}},
                          caps, "s") == []


async def test_the_client_fetches_what_the_check_needs(tmp_path: Path) -> None:
    models = {"checkpoints": ["juggernaut_xl.safetensors"], "upscale_models": ["4x.pth"]}
    async with (SimulatedComfy(duration=0.01, root=tmp_path, models=models) as sim,
                fast_client(sim.url) as client):
        assert await client.models("checkpoints") == ["juggernaut_xl.safetensors"]
        assert await client.models("no-such-folder") is None
        caps = await fetch_capabilities(client)
    assert caps.url == sim.url
    assert caps.models["upscale_models"] == ("4x.pth",) and caps.models["loras"] == ()
    assert caps.nodes["UpscaleModelLoader"] == {"model_name": ("4x.pth",)}
    assert caps.nodes["ImageBlend"]["blend_mode"][0] == "normal"
    assert check_workflow(txt2img_workflow(), caps, "step 1 (base)") == [
        f"step 1 (base) needs checkpoint 'sd_xl_base_1.0.safetensors'; ComfyUI at {sim.url} "
        "has: juggernaut_xl.safetensors"]


# -- run variables take the type of the inputs they fill ----------------------------------------


def recorded_caps() -> Any:
    return capabilities_from(URL, load_trace("07_interrupt_queue_misc.json")["object_info_subset"],
                             {"checkpoints": ["sd_xl_base_1.0.safetensors"]})


def sampler_and_mask() -> dict[str, Any]:
    workflow = txt2img_workflow()
    workflow["3"]["inputs"].update(steps="{{steps}}", cfg="{{cfg}}", seed="{{seed}}")
    workflow["6"]["inputs"]["text"] = "{{prompt}}, {{steps}} steps"
    workflow["20"] = {"class_type": "SolidMask",
                      "inputs": {"value": 1.0, "width": 8, "height": 8}}
    workflow["21"] = {"class_type": "GrowMask", "inputs": {
        "mask": ["20", 0], "expand": 1, "tapered_corners": "{{tapered}}"}}
    return workflow


def test_text_values_become_the_numbers_and_switches_their_inputs_take() -> None:
    values = {"steps": "28", "cfg": " 7.5 ", "tapered": "False", "prompt": "a 1girl", "seed": 5}
    typed, problems = typed_values(sampler_and_mask(), values, recorded_caps().kinds,
                                   "step 1 (base)")
    assert problems == []
    assert typed == {"steps": 28, "cfg": 7.5, "tapered": False, "prompt": "a 1girl", "seed": 5}
    assert type(typed["steps"]) is int and type(typed["cfg"]) is float


def test_a_value_that_cannot_be_its_inputs_type_is_one_line_each() -> None:
    values = {"steps": "7.5", "cfg": "high", "tapered": "maybe", "prompt": "x", "seed": 5}
    _, problems = typed_values(sampler_and_mask(), values, recorded_caps().kinds, "step 1 (base)")
    assert problems == [
        "step 1 (base): cfg=high, but KSampler (#3) cfg takes a number",
        "step 1 (base): steps=7.5, but KSampler (#3) steps takes a whole number",
        "step 1 (base): tapered=maybe, but GrowMask (#21) tapered_corners takes true or false",
    ]


def test_a_number_outside_the_inputs_limits_is_refused_with_them() -> None:
    values = {"steps": "0", "cfg": "1000", "tapered": "yes", "prompt": "x", "seed": 5}
    _, problems = typed_values(sampler_and_mask(), values, recorded_caps().kinds, "step 1 (base)")
    assert problems == [
        "step 1 (base): cfg=1000, but KSampler (#3) cfg takes at most 100.0",
        "step 1 (base): steps=0, but KSampler (#3) steps takes at least 1",
    ]


def test_values_are_left_as_they_are_where_the_worker_says_nothing_of_the_input() -> None:
    workflow = {"1": {"class_type": "NoSuchNode", "inputs": {"n": "{{n}}"}},
                "2": {"class_type": "KSampler", "inputs": {"steps": "x{{steps}}"}}}
    typed, problems = typed_values(workflow, {"n": "3", "steps": "abc"}, recorded_caps().kinds, "s")
    assert (typed, problems) == ({"n": "3", "steps": "abc"}, [])


def test_the_check_at_run_start_names_a_value_of_the_wrong_type() -> None:
    workflow = sampler_and_mask()
    workflow["4"]["inputs"]["ckpt_name"] = "{{checkpoint}}"  # no value yet: not checked
    step = SimpleNamespace(position=1, name="base", workflow=workflow)
    problems = check_steps([step], {"steps": "many", "cfg": "7", "tapered": "no",
                                    "prompt": "x"}, recorded_caps())
    assert problems == ["step 1 (base): steps=many, but KSampler (#3) steps takes a whole number"]


def test_a_colour_input_takes_a_colour_as_people_write_it() -> None:
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {
        "width": "{{size}}", "height": 8, "batch_size": 1, "color": "{{tint}}"}}}
    kinds = recorded_caps().kinds
    for written in ("#cc0000", "0xCC0000", "13369344"):
        typed, problems = typed_values(workflow, {"tint": written, "size": "8"}, kinds, "s")
        assert (typed["tint"], problems) == (0xCC0000, []), written
    _, problems = typed_values(workflow, {"tint": "#cc00", "size": "0x10"}, kinds, "s")
    assert problems == ["s: size=0x10, but EmptyImage (#1) width takes a whole number",
                        "s: tint=#cc00, but EmptyImage (#1) color takes a colour "
                        "(#rrggbb or a whole number)"]
