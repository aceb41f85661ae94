"""The directory a run writes into, reserved before any work and completed last.

A run reserves its directory with one ``mkdir`` (``<output.dir>/<name>-<time>``, then
``-2``, ``-3``, ... when taken, so two runs started in the same second never share one)
or takes the empty directory ``--out`` names (a symlink is followed), and writes an
``INCOMPLETE`` marker into it first: that write is the check that the place can be
written, made before any data is loaded. The marker goes only when every result is
written; a failed or interrupted run removes what it wrote, and a run killed outright
leaves a directory that says it is incomplete.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

from synthlearn.errors import SynthlearnError
from synthlearn.recipe import Recipe

INCOMPLETE = "INCOMPLETE"
"""The marker file a run directory holds from its reservation until its last result is
written."""


def _stamp() -> str:
    """The local time that names a default run directory."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def cannot(action: str, exc: OSError, path: Path) -> SynthlearnError:
    """One line for a file-system failure while reserving or writing a run directory."""
    reason = exc.strerror or str(exc)
    return SynthlearnError(f"cannot {action}: {reason}", where=str(exc.filename or path))


def plain_file_name(name: object) -> bool:
    """A file name without a directory part (no ``/``, ``\\``, ``.`` or ``..``)."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in "/\\\0"))


class RunDir:
    """A run directory reserved for one run: ``path`` exists and holds only the
    ``INCOMPLETE`` marker until ``finish()``; ``discard()`` removes what the run wrote."""

    def __init__(self, path: Path, created: bool) -> None:
        self.path = path
        self.created = created  # False: an empty directory named by --out, kept on discard

    @classmethod
    def claim(cls, path: Path, created: bool) -> RunDir:
        """Write the marker into a directory this run made or found empty. Fails (and
        gives the directory back) when it cannot be written or another run got there
        first."""
        marker = path / INCOMPLETE
        try:
            with open(marker, "x", encoding="utf-8") as fh:
                fh.write(f"synthlearn run started {datetime.now().isoformat(' ', 'seconds')} "
                         f"(process {os.getpid()}) has not finished: if it is not running, "
                         f"delete this directory\n")
        except FileExistsError:
            raise SynthlearnError("another run is writing here; choose another --out",
                                  where=str(path)) from None
        except OSError as exc:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise cannot("write in the run directory", exc, path) from None
        others = [p.name for p in path.iterdir() if p.name != INCOMPLETE]
        if others:  # something appeared between the emptiness check and the marker
            marker.unlink(missing_ok=True)
            raise SynthlearnError("already exists and is not empty; choose another --out",
                                  where=str(path))
        return cls(path, created)

    def finish(self) -> None:
        """Mark the directory complete (every result is written)."""
        (self.path / INCOMPLETE).unlink()

    def discard(self) -> None:
        """Remove what the run wrote: the whole directory if the run made it, otherwise
        (an empty ``--out`` it was given) only its contents. Never raises."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for child in list(self.path.iterdir()) if self.path.is_dir() else []:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _reserve_out(out: str) -> RunDir:
    """Reserve ``--out``: a new directory, or an existing empty one (a symlink to one is
    followed, and the run is written into the directory it points at)."""
    given = Path(out).expanduser()
    final = given.resolve() if given.is_symlink() else given
    if final.exists() and not final.is_dir():
        raise SynthlearnError("exists and is not a directory; choose another --out",
                              where=str(given))
    if final.is_dir():
        try:
            empty = not any(final.iterdir())
        except OSError as exc:
            raise cannot("read the --out directory", exc, final) from None
        if not empty:
            raise SynthlearnError("already exists and is not empty; choose another --out",
                                  where=str(given))
        return RunDir.claim(final, created=False)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a parent directory should be
        raise cannot("create the run directory", OSError(20, os.strerror(20)), final) from None
    except OSError as exc:
        raise cannot("create the run directory", exc, final) from None
    try:
        final.mkdir()
    except FileExistsError:  # made by someone else since the check above
        raise SynthlearnError("already exists; choose another --out", where=str(given)) from None
    except OSError as exc:
        raise cannot("create the run directory", exc, final) from None
    return RunDir.claim(final, created=True)


def _reserve_default(recipe: Recipe) -> RunDir:
    """Reserve ``<output.dir>/<name>-<timestamp>`` (``-2``, ``-3``, ... when taken): each
    candidate is made with one ``mkdir``, so concurrent runs never share one."""
    stamp = _stamp()
    base = Path(recipe.output_dir).expanduser()
    try:
        base.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where the directory should be
        raise cannot("create the output directory", OSError(20, os.strerror(20)), base) from None
    except OSError as exc:
        raise cannot("create the output directory", exc, base) from None
    for n in range(1, 1000):
        final = base / (f"{recipe.name}-{stamp}" if n == 1 else f"{recipe.name}-{stamp}-{n}")
        try:
            final.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise cannot("create the run directory", exc, final) from None
        return RunDir.claim(final, created=True)
    raise SynthlearnError(f"999 run directories named {recipe.name}-{stamp} already exist",
                          where=str(base))


def new_run_dir(recipe: Recipe, out: str | None) -> RunDir:
    """Reserve the run directory: ``--out`` or ``<output.dir>/<name>-<timestamp>``.

    Raises ``SynthlearnError`` (one line, before any work) when the place is taken or
    cannot be written."""
    return _reserve_out(out) if out is not None else _reserve_default(recipe)


def unwritable_reason(path: str | Path) -> str | None:
    """Why a directory could not be created or written at ``path``, or None when it
    can: the first part of the path that exists must be a directory this process may
    write into. Nothing is created (``synthlearn validate`` asks before any work)."""
    here = Path(path).absolute()
    while not here.exists():
        if here.is_symlink():  # a dangling link in the way
            return f"{here} is a link to nothing"
        here = here.parent
    if not here.is_dir():
        return f"{here} is a file, not a directory"
    if not os.access(here, os.W_OK | os.X_OK):
        return f"{here} is not writable"
    return None


def output_problems(recipe: Recipe) -> list[str]:
    """One line per output location of ``recipe`` (``output.dir``, ``output.cache``)
    that a run could not write."""
    problems = []
    for key, path in (("dir", recipe.output_dir), ("cache", recipe.cache_dir)):
        reason = None if path is None else unwritable_reason(path)
        if reason is not None:
            problems.append(f"$.output.{key}: cannot write {path}: {reason}")
    return problems
