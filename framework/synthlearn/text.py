"""Small text helpers shared by the recipe check and the run directory (no imports
beyond the standard library, so any module may use them)."""

from __future__ import annotations

import re


def slug(name: str) -> str:
    """An arm name made safe as part of a file name (and as a folder name under
    ``artifacts/``): characters other than letters, digits, ``.``, ``_`` and ``-`` become
    ``_``, and so does a leading ``.`` (no hidden files, no ``.`` or ``..``). Two names can
    share a slug (``x/y``, ``x_y``): the recipe check refuses such arms."""
    safe = re.sub(r"[^\w.-]", "_", name)
    return ("_" + safe[1:] if safe.startswith(".") else safe) or "arm"
