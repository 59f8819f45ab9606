"""ComfyUI API-format workflows: validation and `{{placeholder}}` templating.

A workflow is the JSON that ComfyUI's "Export (API)" writes: an object mapping node ids to
`{"class_type": ..., "inputs": {...}}`. String inputs may hold placeholders such as
`{{prompt}}`; an input that is exactly one placeholder takes the value's own type (a seed stays
an int), a placeholder inside longer text is interpolated.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
WHOLE_PLACEHOLDER = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$")
# `{seed}`: what a placeholder looks like with one pair of braces, which is no placeholder.
SINGLE_BRACED = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")

# Nodes whose images end up in /history outputs. Custom save nodes can be added here.
IMAGE_OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG"})

# Deeper nesting than this is refused: rendering and storing a workflow recurse once per level,
# and Python's recursion limit (1000) would end them with an error. Real exports are < 10 deep.
MAX_DEPTH = 100

API_EXPORT_HINT = (
    "In ComfyUI open the workflow, then use Workflow → Export (API) "
    "(older versions: enable 'Dev mode Options' in the settings and click 'Save (API Format)')."
)


class WorkflowError(ValueError):
    """A workflow file that cannot be used; the message names the file and what is wrong."""


class MissingVariableError(WorkflowError):
    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        names = ", ".join(f"{{{{{m}}}}}" for m in missing)
        super().__init__(f"no value for {names}")


@dataclass(frozen=True)
class WorkflowInfo:
    """What validation learnt about a workflow."""

    workflow: dict[str, Any]
    variables: frozenset[str]
    output_nodes: list[str] = field(default_factory=list)
    single_braced: frozenset[str] = frozenset()  # `{name}` look-alikes, sent as they are


def parse_workflow(text: str, source: str) -> WorkflowInfo:
    """Parse and validate one workflow; `source` names it in messages (usually a file path)."""
    too_deep = f"{source}: nested more than {MAX_DEPTH} levels deep; a workflow may not be"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise WorkflowError(
            f"{source}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    except RecursionError as err:
        raise WorkflowError(too_deep) from err
    if nesting_depth(data) > MAX_DEPTH:
        raise WorkflowError(too_deep)
    return validate_workflow(data, source)


def nesting_depth(value: Any) -> int:
    """How many objects and arrays deep a JSON value goes, without recursing."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        items = (current.values() if isinstance(current, dict)
                 else current if isinstance(current, list) else None)
        if items is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((item, depth + 1) for item in items)
    return deepest


def validate_workflow(data: Any, source: str) -> WorkflowInfo:
    if isinstance(data, dict) and "prompt" in data and isinstance(data["prompt"], dict):
        # A saved POST /prompt body: the workflow is inside.
        data = data["prompt"]
    if isinstance(data, dict) and ("nodes" in data and "links" in data):
        raise WorkflowError(
            f"{source}: this is ComfyUI's UI format (it has 'nodes' and 'links'), "
            f"not the API format the server runs. {API_EXPORT_HINT}"
        )
    if not isinstance(data, dict) or not data:
        raise WorkflowError(
            f"{source}: expected a JSON object of nodes in ComfyUI's API format. {API_EXPORT_HINT}"
        )
    outputs: list[str] = []
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(
                f"{source}: node {node_id!r} has no 'class_type'; is this an API-format export? "
                f"{API_EXPORT_HINT}"
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(
                f"{source}: node {node_id} ({node['class_type']}): 'inputs' must be an object"
            )
        for name, value in node.get("inputs", {}).items():
            if _is_link(value) and str(value[0]) not in data:
                raise WorkflowError(
                    f"{source}: node {node_id} ({node['class_type']}) input {name!r} links to "
                    f"node {value[0]}, which the workflow does not have; export it again. "
                    f"{API_EXPORT_HINT}"
                )
        if node["class_type"] in IMAGE_OUTPUT_NODES:
            outputs.append(str(node_id))
    if not outputs:
        kinds = ", ".join(sorted(IMAGE_OUTPUT_NODES))
        raise WorkflowError(
            f"{source}: no image output node; add a SaveImage node (one of: {kinds}) "
            "so the run gets its images"
        )
    return WorkflowInfo(
        workflow=data,
        variables=frozenset(find_variables(data)),
        output_nodes=outputs,
        single_braced=frozenset(_single_braced(data)),
    )


def _is_link(value: Any) -> bool:
    """`["4", 0]`: an input fed by another node's output, as ComfyUI reads any such list."""
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)
        and not isinstance(value[0], bool) and isinstance(value[1], int)
    )


def _single_braced(workflow: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for node in workflow.values():
        for text in _strings(node.get("inputs", {}) if isinstance(node, dict) else {}):
            names.update(SINGLE_BRACED.findall(PLACEHOLDER.sub("", text)))
    return names


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def find_variables(workflow: Mapping[str, Any]) -> set[str]:
    """Names of every `{{placeholder}}` in the workflow's inputs."""
    names: set[str] = set()
    for node in workflow.values():
        for text in _strings(node.get("inputs", {}) if isinstance(node, dict) else {}):
            names.update(PLACEHOLDER.findall(text))
    return names


def render_workflow(workflow: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every placeholder replaced; raises MissingVariableError before changing any."""
    missing = sorted(find_variables(workflow) - set(values))
    if missing:
        raise MissingVariableError(missing)

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            whole = WHOLE_PLACEHOLDER.match(value)
            if whole:
                return copy.deepcopy(values[whole.group(1)])
            return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    return {
        node_id: {**node, "inputs": sub(node.get("inputs", {}))}
        for node_id, node in workflow.items()
    }
