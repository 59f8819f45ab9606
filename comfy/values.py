"""Run values typed to the inputs they fill.

A run's variables arrive as text (`/run start variables: steps=28; cfg=7.5`). ComfyUI converts
text itself, but with Python's rules: `int("7.5")` fails at validation, and `bool("false")` is
True, so a switch set to "false" would silently be on. The server's `/object_info` says what
each input takes; a value that fills a whole input is converted to that type here, before
anything is sent, and one that cannot be is one readable line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfy.workflow import WHOLE_PLACEHOLDER

__all__ = ["InputKind", "input_kind", "typed_values"]

TYPED = ("INT", "FLOAT", "BOOLEAN")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_TAKES = {"INT": "a whole number", "FLOAT": "a number", "BOOLEAN": "true or false"}
_COLOUR = re.compile(r"(?:#|0[xX])([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class InputKind:
    """What one widget input takes, as /object_info declares it."""

    kind: str  # INT, FLOAT or BOOLEAN
    minimum: float | None = None
    maximum: float | None = None
    colour: bool = False  # an INT shown as a colour picker: "#cc0000" is a value for it


def input_kind(spec: Any) -> InputKind | None:
    """An INT, FLOAT or BOOLEAN input's type and limits from its /object_info spec."""
    if not isinstance(spec, list | tuple) or not spec or spec[0] not in TYPED:
        return None
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}

    def limit(key: str) -> float | None:
        value = opts.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    return InputKind(str(spec[0]), limit("min"), limit("max"), opts.get("display") == "color")


def _convert(text: str, kind: str, colour: bool = False) -> Any:
    """The value `text` stands for as `kind`; ValueError when it stands for none."""
    word = text.strip()
    written = _COLOUR.fullmatch(word) if colour else None
    if written:
        return int(written[1], 16)
    if kind == "BOOLEAN":
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise ValueError(word)
    if kind == "INT":
        if not word.lstrip("+-").isdigit():  # int() would also take "1_000"
            raise ValueError(word)
        return int(word)
    number = float(word)
    if not math.isfinite(number):
        raise ValueError(word)
    return number


def _fits(value: Any, spec: InputKind) -> str | None:
    if spec.kind == "BOOLEAN":
        return None
    if spec.minimum is not None and value < spec.minimum:
        return f"at least {spec.minimum}"
    if spec.maximum is not None and value > spec.maximum:
        return f"at most {spec.maximum}"
    return None


def typed_values(
    workflow: Mapping[str, Any], values: Mapping[str, Any],
    kinds: Mapping[str, Mapping[str, InputKind]], step: str,
) -> tuple[dict[str, Any], list[str]]:
    """`values` with each text value that fills a whole INT, FLOAT or BOOLEAN input converted
    to that type, and the problems (one line each, `step` naming the step) of those that cannot
    be or fall outside the input's limits. `kinds`: node class → input → what it takes.

    Text inside longer text, inputs the server says nothing of, and values that are not text
    are left as they are."""
    typed = dict(values)
    problems: set[str] = set()
    for node_id, node in workflow.items():
        declared = kinds.get(str(node.get("class_type")), {})
        for input_name, template in (node.get("inputs") or {}).items():
            whole = WHOLE_PLACEHOLDER.match(template) if isinstance(template, str) else None
            spec = declared.get(input_name)
            if whole is None or spec is None or not isinstance(values.get(whole[1]), str):
                continue
            name, text = whole[1], values[whole[1]]
            where = f"{step}: {name}={text.strip()}, but {node['class_type']} (#{node_id}) " \
                    f"{input_name} takes"
            try:
                value = _convert(text, spec.kind, spec.colour)
            except ValueError:
                takes = "a colour (#rrggbb or a whole number)" if spec.colour else _TAKES[spec.kind]
                problems.add(f"{where} {takes}")
                continue
            outside = _fits(value, spec)
            if outside is not None:
                problems.add(f"{where} {outside}")
            elif not (spec.kind == "FLOAT" and type(typed[name]) is int):
                typed[name] = value  # a whole number also fills a FLOAT input
    return typed, sorted(problems)
