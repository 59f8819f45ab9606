"""A prompt as a graph, as comfy_execution reads it: links, cache keys and execution order."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def is_link(value: Any) -> bool:
    """comfy_execution.graph_utils.is_link."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int | float))


def has_node(prompt: dict[str, Any], node_id: Any) -> bool:
    try:
        return node_id in prompt
    except TypeError:
        return False


def hashable(value: Any) -> Any:
    """caching.to_hashable for JSON values (a dict's order does not matter, 1 == 1.0)."""
    if isinstance(value, dict):
        return ("d", frozenset((k, hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("l", tuple(hashable(v) for v in value))
    return value


def signature(
    prompt: dict[str, Any], node_id: str, is_changed: Callable[[dict[str, Any]], Any]
) -> Any:
    """caching.CacheKeySetInputSignature: the node's inputs and all its ancestors'."""
    ancestors: list[Any] = []
    index: dict[Any, int] = {}

    def walk(current: Any) -> None:
        if not has_node(prompt, current):
            return
        inputs = prompt[current].get("inputs") or {}
        for name in sorted(inputs):
            if is_link(inputs[name]) and inputs[name][0] not in index:
                ancestors.append(inputs[name][0])
                index[inputs[name][0]] = len(ancestors) - 1
                walk(inputs[name][0])

    def immediate(current: Any) -> Any:
        if not has_node(prompt, current):
            return [object()]  # never equal: a missing node is not cached
        node = prompt[current]
        parts: list[Any] = [node["class_type"], is_changed(node)]
        inputs = node.get("inputs") or {}
        for name in sorted(inputs):
            value = inputs[name]
            parts.append((name, ("ANCESTOR", index[value[0]], value[1]) if is_link(value)
                          else value))
        return parts

    walk(node_id)
    return hashable([immediate(node_id)] + [immediate(a) for a in ancestors])


def execution_order(
    prompt: dict[str, Any], outputs: list[str], is_cached: Callable[[str], bool],
    is_output: Callable[[str], bool],
) -> tuple[list[str], str | None]:
    """comfy_execution.graph.ExecutionList: the nodes to run, in ComfyUI's order, and the
    node blamed for a dependency cycle (None without one)."""
    pending: dict[str, bool] = {}
    block_count: dict[str, int] = {}
    blocking: dict[str, dict[str, set[Any]]] = {}

    def add_node(first: str) -> None:
        stack, links = [first], []
        while stack:
            current = stack.pop()
            if current in pending:
                continue
            pending[current] = True
            block_count[current] = 0
            blocking[current] = {}
            for value in (prompt[current].get("inputs") or {}).values():
                if is_link(value) and not is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], value[1], current))
        for source, socket, target in links:
            if not is_cached(source):
                add_node(source)
                if target not in blocking[source]:
                    blocking[source][target] = set()
                    block_count[target] += 1
                blocking[source][target].add(socket)

    def pick(ready: list[str]) -> str:
        for node_id in ready:
            if is_output(node_id):
                return node_id
        for node_id in ready:
            if any(is_output(b) for b in blocking[node_id]):
                return node_id
        for node_id in ready:
            if any(is_output(c) for b in blocking[node_id] for c in blocking[b]):
                return node_id
        return ready[0]

    for output in outputs:
        add_node(output)
    order: list[str] = []
    while pending:
        ready = [n for n in pending if block_count[n] == 0]
        if not ready:
            return order, next(iter(pending))
        chosen = pick(ready)
        order.append(chosen)
        del pending[chosen]
        for blocked in blocking.pop(chosen):
            block_count[blocked] -= 1
    return order, None


def resolve(node: dict[str, Any], values: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """A node's inputs with each link replaced by the linked node's output."""
    resolved: dict[str, Any] = {}
    for name, value in (node.get("inputs") or {}).items():
        if is_link(value):
            resolved[name] = values[value[0]][value[1]]
        else:
            resolved[name] = value
    return resolved
