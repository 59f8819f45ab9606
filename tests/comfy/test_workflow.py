"""Workflow validation and templating."""

from __future__ import annotations

import json

import pytest

from comfy.workflow import (
    MissingVariableError,
    WorkflowError,
    find_variables,
    parse_workflow,
    render_workflow,
)

WF = {
    "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "cfg": 7, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{ prompt }}, by {{artist}}"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "{{output_prefix}}/img"}},
}


def test_find_variables():
    assert find_variables(WF) == {"seed", "prompt", "artist", "output_prefix"}


def test_render_keeps_types_and_interpolates():
    out = render_workflow(WF, {"seed": 42, "prompt": "a cat", "artist": "Monet",
                               "output_prefix": "run/01-base"})
    assert out["3"]["inputs"] == {"seed": 42, "cfg": 7, "model": ["4", 0]}
    assert out["6"]["inputs"]["text"] == "a cat, by Monet"
    assert out["9"]["inputs"]["filename_prefix"] == "run/01-base/img"
    assert WF["3"]["inputs"]["seed"] == "{{seed}}"  # the template is untouched


def test_render_whole_value_keeps_lists_and_floats():
    wf = {"1": {"class_type": "SaveImage", "inputs": {"a": "{{x}}", "b": "{{y}}"}}}
    out = render_workflow(wf, {"x": [1, 2], "y": 0.5})
    assert out["1"]["inputs"] == {"a": [1, 2], "b": 0.5}


def test_render_missing_variable_names_them_all():
    with pytest.raises(MissingVariableError) as err:
        render_workflow(WF, {"seed": 1})
    assert err.value.missing == ["artist", "output_prefix", "prompt"]
    assert "{{artist}}" in str(err.value)


def test_parse_reports_json_position():
    with pytest.raises(WorkflowError, match=r"wf.json: not valid JSON \(line 2"):
        parse_workflow('{"1":\n  {,}}', "wf.json")


def test_parse_accepts_a_saved_prompt_body():
    info = parse_workflow(json.dumps({"prompt": WF, "client_id": "x"}), "body.json")
    assert info.output_nodes == ["9"]
    assert "prompt" in info.variables
