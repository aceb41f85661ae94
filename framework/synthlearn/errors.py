"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class SynthlearnError(Exception):
    """A problem the user can fix (bad recipe, missing file, broken plugin).

    ``where`` is a YAML path (``$.arms[1].params.rounds``), a file path or a plugin
    distribution; the message says what is wrong there.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RecipeError(SynthlearnError):
    """A recipe is wrong; carries every problem found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class PluginError(SynthlearnError):
    """A plugin failed to load, or two plugins registered the same component name."""


class DataError(SynthlearnError):
    """A dataset file is missing or malformed, or a partition cannot be made."""


class SiteFailure(SynthlearnError):
    """Site work raised an error: the run stops and names the arm, the site and the round
    or task (the site's own exception is chained as ``__cause__``)."""


class SiteTaskError(Exception):
    """Raised by a runner: site ``site``'s task failed with ``error`` (its own exception,
    or a ``SynthlearnError`` it raised). A runner that runs several sites at once raises
    this so that ``ArmContext.run_sites`` can name the site; the caller turns it into a
    ``SiteFailure`` (or the site's ``SynthlearnError``) naming the arm, site and round."""

    def __init__(self, site: int, error: BaseException) -> None:
        super().__init__(f"site {site}: {error}")
        self.site = site
        self.error = error
