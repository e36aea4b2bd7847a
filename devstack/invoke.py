"""Calling a function's handler in-process, the way the Lambda runtime would."""

from __future__ import annotations

import importlib
import sys
import uuid
from dataclasses import dataclass, field
from types import ModuleType

from event_router.settings import load_settings


@dataclass
class LocalContext:
    """The attributes of ``LambdaContext`` that the handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-2:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler_module(module_name: str) -> ModuleType:
    """Import ``functions.<name>.app`` as a fresh container would: settings re-read, module re-run."""
    load_settings.cache_clear()
    if module_name in sys.modules:
        return importlib.reload(sys.modules[module_name])
    return importlib.import_module(module_name)
