"""Which code made a cache entry: a digest of the source files behind a distribution.

A distribution's *version* does not change while its author edits an editable or source
install, so cache keys hold a code identity instead: the version plus a SHA-256 over the
source files of the top-level package(s) the distribution's components live in, e.g.
``0.1.0+src.3f2a9c01be7d``. Editing any ``.py`` file of that package changes the
identity, so site work made by the old code is not reused.

Digests are computed once per process (the code a process runs does not change under
it); ``forget()`` clears them, for a caller that re-imports edited code.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synthlearn import notices

CORE_PACKAGE = "synthlearn"
CORE_DISTRIBUTION = "synthlearn"
DIGEST_CHARS = 12


def _package_files(module: Any) -> list[tuple[str, Path]]:
    """``(relative name, path)`` of every source file of an imported top-level module:
    all ``*.py`` under each directory of a package (sorted by relative path), or the
    module's own file."""
    paths = getattr(module, "__path__", None)
    if paths is not None:  # a package (regular or namespace)
        files = []
        for index, root in enumerate(sorted(str(p) for p in paths)):
            for folder, dirs, names in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in names:
                    if name.endswith(".py"):
                        path = Path(folder) / name
                        files.append((f"{index}/{path.relative_to(root).as_posix()}", path))
        return sorted(files)
    file = getattr(module, "__file__", None)
    return [(Path(file).name, Path(file))] if file else []


@functools.cache
def package_digest(top: str) -> str | None:
    """SHA-256 (hex) over the source files of the top-level module or package ``top``
    (each file's relative path and content), or None when it has no source files (not
    imported, built in, or made at run time)."""
    module = sys.modules.get(top)
    files = _package_files(module) if module is not None else []
    if not files:
        return None
    digest = hashlib.sha256()
    for name, path in files:
        try:
            content = path.read_bytes()
        except OSError as exc:  # unreadable: its name and the reason still count
            content = f"<unreadable: {exc.strerror}>".encode()
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def module_digest(module_name: str) -> str | None:
    """The digest of the top-level package that module ``module_name`` belongs to."""
    return package_digest(module_name.split(".", 1)[0])


def forget() -> None:
    """Forget every digest computed so far (after edited code was re-imported)."""
    package_digest.cache_clear()


def tagged(version: str, modules: Iterable[str], what: str) -> str:
    """``version`` with the code identity of the packages of ``modules`` appended
    (``0.1.0+src.<12 hex>``). When none of them has source files, ``version`` alone,
    with a warning that entries of ``what`` are keyed by version only."""
    tops = sorted({m.split(".", 1)[0] for m in modules})
    digests = [d for d in (package_digest(t) for t in tops) if d is not None]
    if not digests:
        notices.warn(f"cannot find the source files of {', '.join(tops) or 'its code'}; "
                     "site-output cache entries are keyed by its version only and are "
                     "reused after its code changes", where=what)
        return version
    combined = digests[0] if len(digests) == 1 else hashlib.sha256(
        "/".join(digests).encode()).hexdigest()
    return f"{version}+src.{combined[:DIGEST_CHARS]}"


def core_identity() -> str:
    """The core's version and code identity, e.g. ``0.1.0+src.3f2a9c01be7d``."""
    from synthlearn import __version__

    return tagged(__version__, [CORE_PACKAGE], f"distribution {CORE_DISTRIBUTION}")


def _modules_of(registered: Any) -> list[str]:
    """The modules a registered component's code lives in (its factory and config)."""
    spec = registered.spec
    names = [getattr(obj, "__module__", None) for obj in (spec.factory, spec.config)]
    return [n for n in names if isinstance(n, str) and n in sys.modules]


def code_versions(registered: Iterable[Any]) -> dict[str, str]:
    """Distribution -> version with code identity, for the core and the distributions of
    ``registered`` (``synthlearn.components.RegisteredComponent`` objects): the key
    material that makes cache entries change when any of that code changes."""
    modules: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    for comp in registered:
        versions[comp.distribution] = comp.version
        modules.setdefault(comp.distribution, set()).update(_modules_of(comp))
    out = {CORE_DISTRIBUTION: core_identity()}
    for dist in sorted(versions):
        if dist == CORE_DISTRIBUTION:
            continue
        out[dist] = tagged(versions[dist], modules[dist], f"distribution {dist}")
    return out
