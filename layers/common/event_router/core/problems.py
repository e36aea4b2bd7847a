"""A payload's problems as the router reports them: which field, what is wrong, never the value."""

from __future__ import annotations

from pydantic import ValidationError

from event_router.errors import Problem


def problems(error: ValidationError, whole: str = "body") -> list[Problem]:
    """pydantic's errors as ``{"field", "problem"}`` pairs, never echoing the input.

    An error about the whole document (no field) is reported against ``whole``.
    """
    return [
        {"field": ".".join(str(part) for part in e["loc"]) or whole, "problem": e["msg"]}
        for e in error.errors(include_url=False, include_input=False)
    ]
