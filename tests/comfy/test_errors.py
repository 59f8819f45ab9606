"""ComfyRejected turns ComfyUI's 400 bodies into sentences; the other errors keep their facts."""

from __future__ import annotations

from typing import Any

import pytest

from comfy.errors import (
    ComfyError,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnavailable,
    describe_rejection,
)


def node_error(node: str, class_type: str, *errors: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"type": "prompt_outputs_failed_validation",
                      "message": "Prompt outputs failed validation", "details": "",
                      "extra_info": {}},
            "node_errors": {node: {"errors": list(errors), "dependent_outputs": ["9"],
                                   "class_type": class_type}}}


MISSING_FILE = node_error("7", "LoadImage", {
    "type": "custom_validation_failed", "message": "Custom validation failed for node",
    "details": "image - Invalid image file: x.png", "extra_info": {"input_name": "image"}})

MISSING_CHECKPOINT = node_error("4", "CheckpointLoaderSimple", {
    "type": "value_not_in_list", "message": "Value not in list",
    "details": "ckpt_name: 'sdxl.safetensors' not in []",
    "extra_info": {"input_name": "ckpt_name", "input_config": [[], {}],
                   "received_value": "sdxl.safetensors"}})


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        (MISSING_FILE, "node 7 LoadImage: image 'x.png' is not in the input folder"),
        (MISSING_CHECKPOINT, "checkpoint 'sdxl.safetensors' is not installed on this ComfyUI"),
        ({"error": {"type": "invalid_prompt",
                    "message": "Cannot execute because node Foo does not exist.",
                    "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}},
         "node type 'Foo' is not installed on this ComfyUI"),
        ({"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                    "details": "", "extra_info": {}}, "node_errors": {}},
         "the workflow has no output node"),
        (node_error("4", "CheckpointLoaderSimple", {
            "type": "value_not_in_list", "message": "Value not in list",
            "details": "lora_name: 'x.safetensors' not in []", "extra_info": {}}),
         "LoRA 'x.safetensors' is not installed on this ComfyUI"),
        (node_error("3", "KSampler", {
            "type": "value_not_in_list", "message": "Value not in list",
            "details": "sampler_name: 'magic' not in ['euler']",
            "extra_info": {"input_name": "sampler_name", "received_value": "magic"}}),
         "node 3 KSampler: sampler_name 'magic' is not one of the values this ComfyUI accepts"),
        (node_error("3", "KSampler", {
            "type": "required_input_missing", "message": "Required input is missing",
            "details": "seed", "extra_info": {"input_name": "seed"}}),
         "node 3 KSampler: required input 'seed' is missing"),
        (node_error("1", "EmptyImage", {
            "type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1",
            "details": "width", "extra_info": {"input_name": "width"}}),
         "node 1 EmptyImage: width: Value 0 smaller than min of 1"),
        (node_error("2", "Weird", {"type": "something_new", "message": "It broke",
                                   "details": "because", "extra_info": {}}),
         "node 2 Weird: It broke: because"),
        ({"error": {"type": "invalid_prompt",
                    "message": "Cannot execute because a node is missing the class_type property.",
                    "details": "Node ID '#5'", "extra_info": {}}, "node_errors": {}},
         "a node has no class_type (Node ID '#5'); is this an API-format workflow?"),
        ({"error": "no prompt", "node_errors": []}, "ComfyUI rejected the workflow: no prompt"),
        ("<html>Bad Request</html>", "ComfyUI rejected the workflow: <html>Bad Request</html>"),
        ({}, "ComfyUI rejected the workflow without saying why"),
    ],
)
def test_rejections_read_as_sentences(body: Any, sentence: str) -> None:
    err = ComfyRejected(body)
    assert str(err) == sentence
    assert err.raw is body
    assert isinstance(err, ComfyError)


def test_several_node_errors_are_all_listed_and_the_raw_json_is_kept() -> None:
    body = node_error("7", "LoadImage", MISSING_FILE["node_errors"]["7"]["errors"][0])
    body["node_errors"].update(MISSING_CHECKPOINT["node_errors"])
    err = ComfyRejected(body)
    assert err.reasons == [
        "node 7 LoadImage: image 'x.png' is not in the input folder",
        "checkpoint 'sdxl.safetensors' is not installed on this ComfyUI",
    ]
    assert str(err) == "; ".join(err.reasons)
    assert err.error == body["error"]
    assert set(err.node_errors) == {"7", "4"}
    assert err.status == 400


def test_describe_rejection_never_raises_on_odd_shapes() -> None:
    for odd in (None, 42, [], {"node_errors": {"1": "bad"}}, {"node_errors": {"1": {}}},
                {"error": {"type": None}}, {"node_errors": {"1": {"errors": ["text"]}}}):
        reasons = describe_rejection(odd)
        assert reasons and all(isinstance(r, str) and r for r in reasons)


def test_unavailable_names_the_server_and_the_cause() -> None:
    err = ComfyUnavailable("http://127.0.0.1:8188", "connection refused")
    assert str(err) == "ComfyUI at http://127.0.0.1:8188 is not reachable: connection refused"
    assert (err.url, err.cause) == ("http://127.0.0.1:8188", "connection refused")


def test_protocol_error_keeps_status_and_body() -> None:
    err = ComfyProtocolError("GET /view answered HTTP 404", status=404, body="gone")
    assert (str(err), err.status, err.body) == ("GET /view answered HTTP 404", 404, "gone")
    assert isinstance(err, ComfyError)
