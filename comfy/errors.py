"""Errors raised by the ComfyUI client.

The client maps every transport failure to one of these at its edge, so callers never see an
aiohttp exception::

    ComfyError
    ├── ComfyUnavailable    the server cannot be reached (refused, no connection, host unknown)
    ├── ComfyUnhealthy      the server answers, but with errors (5xx) or too slowly, after retries
    ├── ComfyRejected       POST /prompt answered 400: this server will not run the workflow
    └── ComfyProtocolError  an answer we do not understand (unexpected status or shape)

`ComfyRejected` turns ComfyUI's `error` / `node_errors` JSON into sentences a person can act on
("checkpoint 'x.safetensors' is not installed on this ComfyUI") and keeps the raw JSON as `raw`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ComfyError",
    "ComfyProtocolError",
    "ComfyRejected",
    "ComfyUnavailable",
    "ComfyUnhealthy",
    "describe_rejection",
]


class ComfyError(Exception):
    """Base of every error the ComfyUI client raises."""


class ComfyUnavailable(ComfyError):
    """ComfyUI could not be reached, even after retries; the job itself may be fine."""

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(f"ComfyUI at {url} is not reachable: {cause}")


class ComfyUnhealthy(ComfyError):
    """ComfyUI is up but keeps failing one kind of request: a 5xx, or no answer in time.

    `what` names the request ("GET /history/…"), `status` the HTTP status (None for a
    timeout) and `detail` what ComfyUI said, or how long we waited.
    """

    def __init__(self, url: str, what: str, detail: str, *, status: int | None = None) -> None:
        self.url = url
        self.what = what
        self.detail = detail
        self.status = status
        answer = f"HTTP {status}: {detail}" if status is not None else detail
        super().__init__(f"ComfyUI at {url} answers, but {what} failed: {answer}")


class ComfyProtocolError(ComfyError):
    """ComfyUI answered with a status or a shape this client does not understand.

    `status` is the HTTP status when the problem is an unexpected status (404 from /view for a
    file that is gone, for example), else None.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class ComfyRejected(ComfyError):
    """POST /prompt answered 400: the workflow cannot run on this server as it is.

    `str()` is one readable sentence per problem, joined by "; ". `raw` is the decoded JSON
    body (or the text when it was not JSON); `error` and `node_errors` are its two parts.
    """

    def __init__(self, raw: Any, *, status: int = 400) -> None:
        self.raw = raw
        self.status = status
        body = raw if isinstance(raw, Mapping) else {}
        self.error: Any = body.get("error", raw if not isinstance(raw, Mapping) else None)
        node_errors = body.get("node_errors")
        self.node_errors: dict[str, Any] = (
            dict(node_errors) if isinstance(node_errors, Mapping) else {}
        )
        self.reasons: list[str] = describe_rejection(raw)
        super().__init__("; ".join(self.reasons))


# value_not_in_list on these inputs means a model file is missing, which deserves its own words.
_MODEL_INPUTS = {
    "ckpt_name": "checkpoint",
    "lora_name": "LoRA",
    "vae_name": "VAE",
    "unet_name": "diffusion model",
    "clip_name": "text encoder",
    "clip_name1": "text encoder",
    "clip_name2": "text encoder",
    "clip_name3": "text encoder",
    "control_net_name": "ControlNet model",
    "model_name": "model",
    "style_model_name": "style model",
    "clip_vision_name": "CLIP vision model",
    "upscale_model_name": "upscale model",
}

_MISSING_NODE = re.compile(r"node (?P<cls>.+?) does not exist", re.IGNORECASE)
_NOT_IN_LIST = re.compile(r"^(?P<input>[^:]+): '(?P<value>.*)' not in ", re.DOTALL)
_INVALID_IMAGE = re.compile(r"Invalid image file: (?P<name>.+)$", re.DOTALL)
_CONVERT_TO = re.compile(r"to a (\w+) value")
_WANTED = {"INT": "a whole number (INT)", "FLOAT": "a number (FLOAT)",
           "BOOLEAN": "true or false (BOOLEAN)"}


def describe_rejection(raw: Any) -> list[str]:
    """Readable sentences for a 400 body from POST /prompt, most useful first.

    Unknown shapes still give a sentence (the raw text), never an exception: a rejection must
    always be explainable to the person who started the run.
    """
    if not isinstance(raw, Mapping):
        text = str(raw).strip()
        return [f"ComfyUI rejected the workflow: {text}" if text
                else "ComfyUI rejected the workflow"]
    error = raw.get("error")
    node_errors = raw.get("node_errors")
    reasons: list[str] = []
    if isinstance(node_errors, Mapping):
        for node_id, entry in node_errors.items():
            reasons.extend(_describe_node(str(node_id), entry))
    if reasons:
        return reasons
    if isinstance(error, Mapping):
        return [_describe_error(error)]
    if isinstance(error, str) and error:
        return [f"ComfyUI rejected the workflow: {error}"]
    return ["ComfyUI rejected the workflow without saying why"]


def _describe_error(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type") or "")
    message = str(error.get("message") or "").strip()
    details = str(error.get("details") or "").strip()
    if kind == "prompt_no_outputs":
        return "the workflow has no output node"
    if kind == "invalid_prompt":
        missing = _MISSING_NODE.search(message)
        if missing:
            return f"node type '{missing.group('cls')}' is not installed on this ComfyUI"
        if "class_type" in message:
            where = f" ({details})" if details else ""
            return f"a node has no class_type{where}; is this an API-format workflow?"
    text = message or kind or "ComfyUI rejected the workflow"
    return f"{text}: {details}" if details else text


def _describe_node(node_id: str, entry: Any) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"node {node_id}: {entry}"]
    class_type = str(entry.get("class_type") or "?")
    errors = entry.get("errors")
    if not isinstance(errors, list) or not errors:
        return [f"node {node_id} {class_type}: invalid"]
    return [_describe_node_error(node_id, class_type, e) for e in errors]


def _describe_node_error(node_id: str, class_type: str, error: Any) -> str:
    where = f"node {node_id} {class_type}"
    if not isinstance(error, Mapping):
        return f"{where}: {error}"
    kind = str(error.get("type") or "")
    message = str(error.get("message") or kind or "invalid").strip()
    details = str(error.get("details") or "").strip()
    extra = error.get("extra_info")
    info: Mapping[str, Any] = extra if isinstance(extra, Mapping) else {}
    input_name = str(info.get("input_name") or "")

    if kind == "value_not_in_list":
        parsed = _NOT_IN_LIST.match(details)
        value = info.get("received_value")
        if value is None and parsed:
            value = parsed.group("value")
        if not input_name and parsed:
            input_name = parsed.group("input").strip()
        model_kind = _MODEL_INPUTS.get(input_name)
        if model_kind:
            return f"{model_kind} '{value}' is not installed on this ComfyUI"
        return f"{where}: {input_name} '{value}' is not one of the values this ComfyUI accepts"
    if kind == "custom_validation_failed":
        missing_image = _INVALID_IMAGE.search(details)
        if missing_image:
            name = missing_image.group("name").strip()
            return f"{where}: image '{name}' is not in the input folder"
    if kind == "invalid_input_type":
        target = _CONVERT_TO.search(message)
        wanted = _WANTED.get(target[1]) if target else None
        if wanted and input_name:
            return f"{where}: {input_name} '{info.get('received_value')}' is not {wanted}"
    if kind == "required_input_missing":
        return f"{where}: required input '{input_name or details}' is missing"
    if kind in ("value_smaller_than_min", "value_bigger_than_max"):
        return f"{where}: {input_name or details}: {message}"
    if kind == "return_type_mismatch":
        return f"{where}: input '{input_name}' is linked to an output of the wrong type ({details})"
    if details and details != input_name:
        return f"{where}: {message}: {details}"
    if input_name:
        return f"{where}: {input_name}: {message}"
    return f"{where}: {message}"
