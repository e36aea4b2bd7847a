"""A container's life under Lambda SnapStart (docs/deploy.md, "SnapStart").

With SnapStart, Lambda runs a function's initialisation once, when a version is published, snapshots
the initialised memory, and starts new containers from that snapshot. Whatever initialisation kept is
then shared by every container restored from it, and may be hours old: an open database connection
(one socket, cloned into many containers), secrets and tokens read before (perhaps rotated since), the
random generator's state (every container would draw the same numbers).

Each module that keeps such state registers here how to let it go: ``before_snapshot`` hooks run
before Lambda takes the snapshot (connections are closed), ``after_restore`` hooks run in each
restored container before its first request (connections, cached secrets and random state are
made anew). The hooks are Lambda's runtime hooks (``snapshot_restore_py``, part of the Python managed
runtimes); where that module is absent, nothing is ever snapshotted and nothing is registered.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from types import ModuleType

Hook = Callable[[], object]


def _runtime() -> ModuleType | None:
    try:
        return importlib.import_module("snapshot_restore_py")
    except ImportError:
        return None


_RUNTIME = _runtime()


def before_snapshot(hook: Hook) -> Hook:
    """Run ``hook`` before Lambda snapshots the initialised container."""
    if _RUNTIME is not None:
        _RUNTIME.register_before_snapshot(hook)
    return hook


def after_restore(hook: Hook) -> Hook:
    """Run ``hook`` in every container restored from the snapshot, before its first request."""
    if _RUNTIME is not None:
        _RUNTIME.register_after_restore(hook)
    return hook


# Random state taken before the snapshot would repeat in every restored container: reseed it from the
# operating system (the ``secrets`` module and ``uuid4`` read the operating system every time).
after_restore(random.seed)
