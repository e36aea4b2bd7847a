"""Log keys per invocation in the local stack.

In Lambda a container serves one request at a time, so Powertools keeps the keys a handler's
``inject_lambda_context`` sets (``function_name``, ``cold_start``, the ``correlation_id``) on the one
logger of the process. The local stack runs every function in one process, on many threads: with
one set of keys, a line logged by one function carried another's name and another request's
correlation id. Here each thread keeps keys of its own, as each container does in AWS.
"""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter


class _PerThreadKeys(LambdaPowertoolsFormatter):
    """Powertools' formatter whose keys (``log_format``) belong to the thread that logs."""

    _local: threading.local
    _base: dict[str, Any]

    @property
    def log_format(self) -> dict[str, Any]:
        keys: dict[str, Any] | None = getattr(self._local, "keys", None)
        if keys is None:
            keys = self._local.keys = dict(self._base)
        return keys

    @log_format.setter
    def log_format(self, value: dict[str, Any]) -> None:
        self._local.keys = value


def keys_per_thread(logger: Logger) -> None:
    """Give every thread its own copy of ``logger``'s keys, starting from those it has now (idempotent)."""
    formatter = logger.registered_formatter
    if isinstance(formatter, _PerThreadKeys) or not isinstance(formatter, LambdaPowertoolsFormatter):
        return
    base = dict(formatter.log_format)
    formatter.__class__ = _PerThreadKeys  # the same formatter, its settings kept; only where keys live changes
    vars(formatter).pop("log_format", None)
    assert isinstance(formatter, _PerThreadKeys)
    formatter._local, formatter._base = threading.local(), base
