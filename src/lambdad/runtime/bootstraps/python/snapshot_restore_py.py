"""Runtime hooks for SnapStart, as AWS's ``snapshot_restore_py`` library offers them.

lambdad's Python runtime makes this module importable as ``snapshot_restore_py`` by function
code. Hooks registered while the function initialises run in the SnapStart template:
before-snapshot hooks once, after init (in reverse order of registration); after-restore hooks
in every environment forked from it, before its first event (in order of registration).
Both ``register_*`` functions return the callable, so they work as decorators too.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

_before_snapshot: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
_after_restore: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []


def register_before_snapshot(
    func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[..., Any]:
    """Run ``func(*args, **kwargs)`` before the snapshot is taken."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(
    func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[..., Any]:
    """Run ``func(*args, **kwargs)`` after an environment is restored from the snapshot."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _before_snapshot


def get_after_restore() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _after_restore
