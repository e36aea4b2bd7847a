"""A webhook body decoded (docs/api.md, "Accepted bodies"): a JSON object or form fields, decided by the
content, and refused when Postgres could not store it (NUL characters, lone surrogates, numbers that
are not finite, nesting deeper than ``MAX_NESTING``).
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl

from event_router.errors import InvalidPayload, Problem

MAX_NESTING = 32  # levels of objects and lists a body may nest; deeper is a 400 (docs/decisions.md)


def decode_body(body: bytes) -> dict[str, Any]:
    """JSON object or form fields, decided by the content rather than the Content-Type."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload([{"field": "body", "problem": "is not UTF-8 text"}]) from None
    stripped = text.strip()
    if not stripped:
        raise InvalidPayload([{"field": "body", "problem": "is empty"}])
    if stripped[0] in "{[":
        try:
            value = json.loads(stripped, parse_constant=_refuse_constant)
        except RecursionError:
            raise InvalidPayload([_too_deep("body")]) from None
        except ValueError as error:
            problem = f"is not valid JSON (line {error.lineno}, column {error.colno})"  # type: ignore[attr-defined]
            raise InvalidPayload([{"field": "body", "problem": problem}]) from None
        if not isinstance(value, dict):
            raise InvalidPayload([{"field": "body", "problem": "must be a JSON object"}])
        return _storable(value)
    if "=" not in stripped:
        raise InvalidPayload([{"field": "body", "problem": "is neither a JSON object nor form-encoded"}])
    return _storable(_form_fields(stripped))


def _refuse_constant(name: str) -> float:
    raise InvalidPayload([{"field": "body", "problem": f"holds {name}, which is not a JSON number"}])


def _too_deep(path: str) -> Problem:
    return {"field": _printable(path), "problem": f"nests objects or lists deeper than {MAX_NESTING} levels"}


def _storable(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse what could be accepted and then fail on every write: text Postgres cannot store
    (NUL characters; lone surrogates from JSON escapes such as ``\\ud800``, which are not
    Unicode at all), numbers that are not finite, and nesting deeper than ``MAX_NESTING``."""
    pending: list[tuple[str, Any, int]] = [("", fields, 1)]
    while pending:
        path, value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_NESTING:
            raise InvalidPayload([_too_deep(path)])
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(f"{path}.{key}" if path else str(key), key)
                pending.append((f"{path}.{key}" if path else str(key), item, depth + 1))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(path, value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidPayload([{"field": _printable(path), "problem": "is not a finite number"}])
    return fields


def _check_text(path: str, text: str) -> None:
    if "\x00" in text:
        raise InvalidPayload([{"field": _printable(path), "problem": "contains a NUL character"}])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload([{"field": _printable(path), "problem": "is not valid Unicode"}]) from None


def _printable(path: str) -> str:
    return path.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00") or "body"


def _form_fields(text: str) -> dict[str, Any]:
    """Form parameters; PHP-style ``other[itemid]=5`` keys nest, repeated keys become lists."""
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        name, _, rest = key.removesuffix("[]").partition("[")
        *parents, leaf = [name, *rest.removesuffix("]").split("][")] if rest else [name]
        target = fields
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise InvalidPayload([{"field": part, "problem": "is given both as a value and as an object"}])
        if leaf not in target:
            target[leaf] = value
        elif isinstance(target[leaf], list):
            target[leaf].append(value)
        else:
            target[leaf] = [target[leaf], value]
    return fields
