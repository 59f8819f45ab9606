"""What one ComfyUI server can run, and whether a workflow needs something it lacks.

A server describes itself in `GET /object_info` (every node class and, for each dropdown input,
its choices) and `GET /models/<folder>` (the model files in a folder). From those a workflow can
be checked before a job is made of it: node classes the server does not have, dropdown values
it does not offer, and model files it does not have, each one readable line.

Dropdowns come in two forms in ComfyUI 0.3.x: classic nodes give `[[choice, ...], {...}]`,
nodes written with comfy_api give `["COMBO", {"options": [choice, ...], ...}]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from comfy.values import InputKind, input_kind, typed_values
from comfy.workflow import PLACEHOLDER, find_variables, render_workflow

__all__ = [
    "MODEL_FOLDERS",
    "PARENT_IMAGE",
    "StepLike",
    "WorkerCapabilities",
    "capabilities_from",
    "check_steps",
    "check_workflow",
    "combo_choices",
    "fetch_capabilities",
]

# Inputs that name a model file: input name → (folder in models/, what a person calls it).
MODEL_INPUTS: dict[str, tuple[str, str]] = {
    "ckpt_name": ("checkpoints", "checkpoint"),
    "lora_name": ("loras", "LoRA"),
    "vae_name": ("vae", "VAE"),
    "upscale_model_name": ("upscale_models", "upscale model"),
    "unet_name": ("diffusion_models", "diffusion model"),
    "clip_name": ("text_encoders", "text encoder"),
    "clip_name1": ("text_encoders", "text encoder"),
    "clip_name2": ("text_encoders", "text encoder"),
    "clip_name3": ("text_encoders", "text encoder"),
    "clip_name4": ("text_encoders", "text encoder"),
    "control_net_name": ("controlnet", "ControlNet"),
}
# Model inputs whose name alone does not say so.
NODE_MODEL_INPUTS: dict[tuple[str, str], tuple[str, str]] = {
    ("UpscaleModelLoader", "model_name"): ("upscale_models", "upscale model"),
}
MODEL_FOLDERS = tuple(dict.fromkeys(f for f, _ in (*MODEL_INPUTS.values(),
                                                   *NODE_MODEL_INPUTS.values())))

# What `{{parent_image}}` becomes for a check: the parent is uploaded per job, so the input
# that takes it cannot be checked in advance.
PARENT_IMAGE = "\x00parent image\x00"
_CHECK_VALUES = {"seed": 0, "output_prefix": "comfy-curator-check", "parent_image": PARENT_IMAGE}
_LISTED = 12  # choices named in one line before "…"


@dataclass(frozen=True)
class WorkerCapabilities:
    """One server's node classes (each with its dropdown inputs' choices), model files, and
    what its number and switch inputs take."""

    url: str
    nodes: Mapping[str, Mapping[str, tuple[Any, ...]]]
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # folder → files
    kinds: Mapping[str, Mapping[str, InputKind]] = field(default_factory=dict)

    def files(self, folder: str, combo: Sequence[Any]) -> tuple[str, ...]:
        """The files a model input may name: the folder's list, else the dropdown's."""
        listed = self.models.get(folder)
        return listed if listed is not None else tuple(str(c) for c in combo)


def combo_choices(spec: Any) -> tuple[Any, ...] | None:
    """A dropdown input's choices in either /object_info form; None for other inputs."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    head = spec[0]
    if isinstance(head, list | tuple):
        return tuple(head)
    if head == "COMBO":
        options = spec[1].get("options") if len(spec) > 1 and isinstance(spec[1], dict) else None
        return tuple(options) if isinstance(options, list | tuple) else ()
    return None


def capabilities_from(
    url: str, object_info: Mapping[str, Any], models: Mapping[str, Sequence[str] | None]
) -> WorkerCapabilities:
    """Parse `/object_info` and the `/models/<folder>` answers (None: no such folder)."""
    nodes: dict[str, dict[str, tuple[Any, ...]]] = {}
    kinds: dict[str, dict[str, InputKind]] = {}
    for name, info in object_info.items():
        combos: dict[str, tuple[Any, ...]] = {}
        typed: dict[str, InputKind] = {}
        inputs = info.get("input") if isinstance(info, dict) else None
        for section in ("required", "optional"):
            specs = inputs.get(section) if isinstance(inputs, dict) else None
            for input_name, spec in (specs or {}).items():
                choices = combo_choices(spec)
                if choices is not None:
                    combos[input_name] = choices
                kind = input_kind(spec)
                if kind is not None:
                    typed[input_name] = kind
        nodes[str(name)] = combos
        kinds[str(name)] = typed
    files = {folder: tuple(listed) for folder, listed in models.items() if listed is not None}
    return WorkerCapabilities(url.rstrip("/"), nodes, files, kinds)


def _listing(values: Sequence[Any]) -> str:
    if not values:
        return "none"
    shown = ", ".join(str(v) for v in values[:_LISTED])
    return shown + (f", … ({len(values)} in all)" if len(values) > _LISTED else "")


def _uncheckable(value: Any) -> bool:
    if isinstance(value, list) or not isinstance(value, str | int | float):
        return True  # a link to another node's output, or not a dropdown value
    return isinstance(value, str) and (value == PARENT_IMAGE or bool(PLACEHOLDER.search(value)))


def check_workflow(
    workflow: Mapping[str, Any], caps: WorkerCapabilities, step: str
) -> list[str]:
    """What this worker lacks to run an (already rendered) workflow, one line each.

    `step` names the step in the lines, e.g. "step 1 (base)". Inputs still holding a
    `{{placeholder}}`, links, and the parent image are not checked.
    """
    where = f"ComfyUI at {caps.url}"
    problems: list[str] = []
    for node_id, node in workflow.items():
        class_type = str(node.get("class_type"))
        combos = caps.nodes.get(class_type)
        if combos is None:
            problems.append(f"{step} uses node {class_type} (#{node_id}); {where} does not "
                            "have it (a custom node to install there?)")
            continue
        for input_name, value in (node.get("inputs") or {}).items():
            choices = combos.get(input_name)
            if choices is None or _uncheckable(value) or value in choices:
                continue
            model = NODE_MODEL_INPUTS.get((class_type, input_name)) or MODEL_INPUTS.get(input_name)
            if model is not None:
                folder, what = model
                problems.append(f"{step} needs {what} '{value}'; {where} has: "
                                f"{_listing(caps.files(folder, choices))}")
            else:
                problems.append(f"{step}: {class_type} (#{node_id}) {input_name} '{value}' is "
                                f"not a choice on {where}; it offers: {_listing(choices)}")
    return list(dict.fromkeys(problems))


class StepLike(Protocol):
    @property
    def position(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def workflow(self) -> dict[str, Any]: ...


def check_steps(
    steps: Iterable[StepLike], variables: Mapping[str, Any], caps: WorkerCapabilities
) -> list[str]:
    """Every step's workflow filled with the run's values, each typed to the inputs it fills
    (and stand-ins for the seed, output prefix and parent image), checked against one worker.
    Variables with no value yet stay placeholders and are not checked."""
    problems: list[str] = []
    for step in steps:
        label = f"step {step.position} ({step.name})"
        typed, wrong = typed_values(step.workflow, variables, caps.kinds, label)
        values = {**{v: f"{{{{{v}}}}}" for v in find_variables(step.workflow)},
                  **_CHECK_VALUES, **typed}
        rendered = render_workflow(step.workflow, values)
        problems += wrong + check_workflow(rendered, caps, label)
    return problems


class _Describes(Protocol):
    @property
    def url(self) -> str: ...
    async def object_info(self) -> dict[str, Any]: ...
    async def models(self, folder: str) -> list[str] | None: ...


async def fetch_capabilities(client: _Describes) -> WorkerCapabilities:
    """Ask one server for its nodes and the model folders the check names."""
    info = await client.object_info()
    models = {folder: await client.models(folder) for folder in MODEL_FOLDERS}
    return capabilities_from(client.url, info, models)
