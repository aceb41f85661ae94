"""How a conformance check states its rules and fails one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from synthlearn.errors import SynthlearnError

__all__ = ["ConformanceError", "Rules"]


class ConformanceError(AssertionError):
    """A component broke a rule of its kind's contract. ``check`` is the check
    (``check_generator``), ``rule`` the rule's name as the check's docstring lists it,
    ``detail`` what was seen."""

    def __init__(self, check: str, subject: str, rule: str, detail: str) -> None:
        super().__init__(f"{check}({subject}): rule '{rule}' failed: {detail}")
        self.check = check
        self.rule = rule
        self.detail = detail


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Rules:
    """The rules of one check on one object: ``with rules.rule("name"):`` runs a step
    whose unexpected exception fails that rule; ``rules.require(ok, "name", detail)``
    fails it when ``ok`` is false."""

    def __init__(self, check: str, obj: Any, label: str | None = None) -> None:
        self.check = check
        self.subject = label if label is not None else type(obj).__name__

    def fail(self, rule: str, detail: str) -> NoReturn:
        raise ConformanceError(self.check, self.subject, rule, detail)

    def require(self, ok: object, rule: str, detail: str) -> None:
        if not ok:
            self.fail(rule, detail)

    @contextmanager
    def rule(self, name: str) -> Iterator[None]:
        try:
            yield
        except ConformanceError:
            raise
        except Exception as exc:
            self.fail(name, f"raised {_first_line(exc)}")

    def raises_synthlearn_error(self, rule: str, call: Any, what: str,
                                source: str | None = None) -> SynthlearnError:
        """``call()`` must raise a ``SynthlearnError`` (naming ``source`` when given):
        a crash of another type, or nothing raised, fails ``rule``."""
        try:
            call()
        except SynthlearnError as exc:
            if source is not None and exc.where != source and source not in str(exc):
                self.fail(rule, f"{what}: the SynthlearnError does not name the source "
                                f"{source!r}: {exc}")
            return exc
        except Exception as exc:
            self.fail(rule, f"{what}: raised {_first_line(exc)}, expected a SynthlearnError")
        self.fail(rule, f"{what}: nothing was raised, expected a SynthlearnError")

    def protocol(self, obj: Any, methods: tuple[str, ...], attributes: tuple[str, ...] = ()
                 ) -> None:
        """Rule ``protocol``: the object offers its kind's methods and attributes."""
        missing = [f"{m}()" for m in methods if not callable(getattr(obj, m, None))]
        missing += [a for a in attributes if not hasattr(obj, a)]
        self.require(not missing, "protocol", f"missing {', '.join(missing)}")
