"""Calling a function's handler in-process, the way the Lambda runtime would."""

from __future__ import annotations

import importlib.util
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.logs import keys_per_thread
from event_router.observability import logger
from event_router.settings import load_settings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LocalContext:
    """The attributes of ``LambdaContext`` that the handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_seconds: float = 30.0  # the function's Timeout: what get_remaining_time_in_millis counts down from
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-2:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``variables`` set (an empty value unsets), restored afterwards."""
    saved = dict(os.environ)
    for name, value in variables.items():
        if value == "":
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_function(code_uri: Path, handler: str, variables: Mapping[str, str], name: str) -> Handler:
    """A fresh container of one function: its module imported anew under its own environment.

    Each call gives an independent module object, so the four processors that
    share ``functions/module_processor`` can live side by side, each with the
    ``MODULE`` and connections it was started with.
    """
    module_file, _, attribute = handler.rpartition(".")
    with environment(variables):
        load_settings.cache_clear()
        try:
            spec = importlib.util.spec_from_file_location(
                f"{name}_{uuid.uuid4().hex[:8]}", code_uri / f"{module_file}.py"
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {handler} from {code_uri}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            load_settings.cache_clear()
    keys_per_thread(logger)  # many containers in one process: each invocation's log keys its own
    function: Handler = getattr(module, attribute)
    return function
