"""Warnings a run gives the user: printed on stderr as they happen (even with
``--quiet``) and kept, so the run writes them into ``metrics.json`` (``warnings``) and
the report.

A warning is for something that makes a figure doubtful without making it wrong
(a recomputed cache entry, a generator that collapsed, a class with a handful of
images); anything that makes a figure meaningless is an error instead.
"""

from __future__ import annotations

import sys

_collected: list[str] = []


def start() -> None:
    """Forget the warnings of an earlier run in this process (a run calls it first)."""
    _collected.clear()


def warn(message: str, where: str | None = None) -> None:
    """Print ``warning: <where>: <message>`` on stderr and keep it for the report."""
    text = f"{where}: {message}" if where else message
    if text not in _collected:
        _collected.append(text)
    print(f"warning: {text}", file=sys.stderr, flush=True)


def collected() -> list[str]:
    """The warnings given since ``start()``, in order, without repeats."""
    return list(_collected)
