"""How a node type is declared, and what /object_info says of one.

A node type is one declaration: its inputs and outputs as /object_info reports them and
validation checks them, and the function that runs it. `@node(...)` over that function makes
one; `SimulatedComfy(nodes=...)` serves more of them than the core set.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from comfy.simulator.files import Folders

# ComfyUI's model folders (folder_paths.folder_names_and_paths), in its order: what GET /models
# lists. A simulator has no model files unless it is given some (`models=`).
MODEL_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
    "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
)


@dataclass(frozen=True)
class NodeContext:
    """What a node may use of the server running it: its folders and its randomness."""

    folders: Folders
    prompt: dict[str, Any]
    rng: random.Random

    def input_path(self, name: str) -> Path | None:
        return self.folders.input_path(name)

    def save(
        self, images: list[Image.Image], filename_prefix: str, folder_type: str
    ) -> list[dict[str, str]]:
        return self.folders.save(self.prompt, images, filename_prefix, folder_type)


# A node's outputs (one value per output slot) and its UI result (None: it shows nothing).
Result = tuple[tuple[Any, ...], dict[str, Any] | None]
Run = Callable[[NodeContext, dict[str, Any]], Result]


@dataclass(frozen=True)
class Input:
    """One required input. `choices` names a combo's values: a tuple, or a dynamic list (a
    model folder's name, or "input_files"). `check`, like a node's VALIDATE_INPUTS, replaces the
    range and list checks of the value: it answers why the value is refused, or None."""

    kind: str
    opts: Mapping[str, Any] | None = None
    choices: tuple[str, ...] | str | None = None
    check: Callable[[NodeContext, Any], str | None] | None = None


@dataclass(frozen=True)
class NodeType:
    """One node type: what /object_info says of it, what validation checks, how it runs."""

    name: str
    inputs: Mapping[str, Input]
    outputs: tuple[str, ...]
    category: str
    display_name: str | None
    output_node: bool = False
    python_module: str = "nodes"
    description: str = ""
    hidden: Mapping[str, str] = field(default_factory=dict)
    # Written with comfy_api's schema (io.ComfyNode): /object_info gives its combos as
    # ["COMBO", {"options": [...]}] and adds output_tooltips, deprecated, experimental, api_node;
    # classic nodes give a combo as [[...], {...}].
    v3: bool = False
    # The input counting a sampler's steps: progress is reported, and the interrupt flag seen,
    # at each step.
    steps_input: str | None = None
    # IS_CHANGED: part of the cache key, so a node whose answer changes runs again.
    is_changed: Callable[[NodeContext, Mapping[str, Any]], Any] | None = None
    run: Run = field(kw_only=True)


def node(
    name: str, inputs: Mapping[str, Input], outputs: tuple[str, ...], category: str,
    display_name: str | None, **details: Any,
) -> Callable[[Run], NodeType]:
    """Declare a node type around the function that runs it (`details`: NodeType's fields)."""

    def declare(run: Run) -> NodeType:
        return NodeType(name, inputs, outputs, category, display_name, run=run, **details)

    return declare


def integer(default: int, lo: int, hi: int, **extra: Any) -> Input:
    return Input("INT", {"default": default, "min": lo, "max": hi, **extra})


def number(default: float, lo: float, hi: float, **extra: Any) -> Input:
    return Input("FLOAT", {"default": default, "min": lo, "max": hi, **extra})


def combo_choices(spec: Input, models: Mapping[str, list[str]], folders: Folders) -> list[str]:
    """A combo's values now: a model folder's files, the input folder's files, or a fixed list."""
    if isinstance(spec.choices, str) and spec.choices in models:
        return sorted(models[spec.choices])
    if spec.choices == "input_files":
        return folders.input_files()
    return list(spec.choices or ())


def _input_info(node: NodeType, spec: Input, choices: Callable[[Input], list[str]]) -> list[Any]:
    if node.v3:  # comfy_api's add_to_dict_v1: (io type, as_dict()), options inside
        opts = dict(spec.opts or {})
        if spec.kind == "COMBO":
            opts |= {"multiselect": False, "options": choices(spec)}
        return [spec.kind, opts]
    head: Any = choices(spec) if spec.kind == "COMBO" else spec.kind
    return [head] if spec.opts is None else [head, dict(spec.opts)]


def object_info(node: NodeType, choices: Callable[[Input], list[str]]) -> dict[str, Any]:
    """The /object_info entry for one node type, in ComfyUI's shape."""
    required = {name: _input_info(node, spec, choices) for name, spec in node.inputs.items()}
    inputs: dict[str, Any] = {"required": required}
    order: dict[str, list[str]] = {"required": list(node.inputs)}
    if node.hidden:
        inputs["hidden"] = dict(node.hidden)
        order["hidden"] = list(node.hidden)
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": order,
        "output": list(node.outputs),
        "output_is_list": [False] * len(node.outputs),
        "output_name": list(node.outputs),
        "name": node.name,
        "display_name": node.display_name,
        "description": node.description,
        "python_module": node.python_module,
        "category": node.category,
        "output_node": node.output_node,
    }
    if node.v3:
        info |= {"output_tooltips": [None] * len(node.outputs), "deprecated": False,
                 "experimental": False, "api_node": False}
    return info
