"""Prompt validation as execution.validate_prompt does it, with the error bodies it answers.

What that function does not guard raises here too (the caller answers 500): a link to a
missing node or slot is reported as an exception during (inner) validation.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any

from comfy.simulator.catalogue import Input, NodeContext, NodeType

_CONVERT: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str,
                                             "BOOLEAN": bool}

Validated = dict[Any, tuple[bool, list[dict[str, Any]]]]


def error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": dict(extra)}


def type_name(err: BaseException) -> str:
    kind = type(err)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


class Validator:
    """Checks prompts against a catalogue; combos list what the server has at the time."""

    def __init__(
        self, node_types: Mapping[str, NodeType], choices: Callable[[Input], list[str]],
        context: Callable[[dict[str, Any]], NodeContext],
    ) -> None:
        self._node_types = node_types
        self._choices = choices
        self._context = context

    def validate(
        self, prompt: Any
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """(valid, error, outputs to run, node_errors), as execution.validate_prompt builds them."""
        outputs: list[str] = []
        for node_id in prompt:
            node = prompt[node_id]
            if "class_type" not in node:
                return False, error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'"), [], {}
            node_type = self._node_types.get(node["class_type"])
            if node_type is None:
                return False, error(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'"), [], {}
            if node_type.output_node and node_id not in outputs:
                outputs.append(node_id)
        if not outputs:
            return False, error("prompt_no_outputs", "Prompt has no outputs"), [], {}

        validated: Validated = {}
        good: list[str] = []
        own_errors: list[dict[str, Any]] = []
        node_errors: dict[str, Any] = {}
        for output in outputs:
            try:
                valid, reasons = self._validate_node(prompt, output, validated)
            except Exception as err:
                valid = False
                reasons = [error("exception_during_validation", "Exception when validating node",
                                 str(err), exception_type=type_name(err),
                                 traceback=traceback.format_tb(err.__traceback__))]
                validated[output] = (False, reasons)
            if valid:
                good.append(output)
                continue
            own_errors += reasons
            # Every failed node seen so far, not only this output's ancestors (as ComfyUI does).
            for node_id, (ok, errors) in validated.items():
                if not ok and errors:
                    entry = node_errors.setdefault(node_id, {
                        "errors": errors, "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for e in own_errors)
            failed = error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                           details)
            return False, failed, [], node_errors
        return True, None, good, node_errors

    def _validate_node(
        self, prompt: dict[str, Any], node_id: Any, validated: Validated,
    ) -> tuple[bool, list[dict[str, Any]]]:
        """execution.validate_inputs: a missing node or slot raises, to be caught a level up."""
        if node_id in validated:
            return validated[node_id]
        validated[node_id] = (True, [])  # provisional: a cycle is reported when it runs
        inputs = prompt[node_id]["inputs"]
        node_type = self._node_types[prompt[node_id]["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True
        for name, spec in node_type.inputs.items():
            head: Any = self._choices(spec) if spec.kind == "COMBO" else spec.kind
            config = [head, dict(spec.opts or {})]
            if name not in inputs:
                errors.append(error("required_input_missing", "Required input is missing", name,
                                    input_name=name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name, input_name=name, input_config=config, received_value=value))
                    continue
                source = value[0]
                received = self._node_types[prompt[source]["class_type"]].outputs[value[1]]
                if received != spec.kind:
                    errors.append(error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({spec.kind})",
                        input_name=name, input_config=config, received_type=received,
                        linked_node=value))
                    continue
                try:
                    if not self._validate_node(prompt, source, validated)[0]:
                        valid = False
                except Exception as err:
                    valid = False
                    message = str(err)
                    validated[source] = (False, [error(
                        "exception_during_inner_validation", "Exception when validating inner node",
                        message, input_name=name, input_config=config, exception_message=message,
                        exception_type=type_name(err),
                        traceback=traceback.format_tb(err.__traceback__), linked_node=value)])
                continue
            problem = self._check_widget(prompt, inputs, name, spec, config, node_type.v3)
            if problem is not None:
                errors.append(problem)
        result = (valid and not errors, errors)
        validated[node_id] = result
        return result

    def _check_widget(
        self, prompt: dict[str, Any], inputs: dict[str, Any], name: str, spec: Input,
        config: list[Any], v3: bool,
    ) -> dict[str, Any] | None:
        """Convert the value in place (the queued prompt keeps it converted), then check it.

        A comfy_api node's combo declares its type as "COMBO", not as the list of its values,
        and ComfyUI checks only list-typed combos: any value passes, and the node fails when it
        runs."""
        value = inputs[name]
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = inputs[name] = value["__value__"]
            if spec.kind in _CONVERT:
                value = inputs[name] = _CONVERT[spec.kind](value)
        except Exception as err:
            return error("invalid_input_type",
                         f"Failed to convert an input value to a {spec.kind} value",
                         f"{name}, {value}, {err}", input_name=name, input_config=config,
                         received_value=value, exception_message=str(err))
        if spec.check is not None:
            reason = spec.check(self._context(prompt), value)
            if reason is not None:
                return error("custom_validation_failed", "Custom validation failed for node",
                             f"{name} - {reason}", input_name=name)
            return None
        opts = spec.opts or {}
        if "min" in opts and value < opts["min"]:
            return error("value_smaller_than_min",
                         f"Value {value} smaller than min of {opts['min']}", name,
                         input_name=name, input_config=config, received_value=value)
        if "max" in opts and value > opts["max"]:
            return error("value_bigger_than_max",
                         f"Value {value} bigger than max of {opts['max']}", name,
                         input_name=name, input_config=config, received_value=value)
        if spec.kind != "COMBO" or v3:
            return None
        choices = self._choices(spec)
        if value in choices:
            return None
        listed: Any = choices if len(choices) <= 20 else f"(list of length {len(choices)})"
        combo_config = [choices, dict(opts)] if len(choices) <= 20 else None
        return error("value_not_in_list", "Value not in list",
                     f"{name}: '{value}' not in {listed}",
                     input_name=name, input_config=combo_config, received_value=value)
