"""``ArmContext.run_sites`` and the runner contract: every uncached site goes to the
runner at once, each result is cached, counted and announced as it arrives, and a
runner's failure, a stray or a missing result names the arm, the site and the task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from synthlearn import SiteFailure, SiteTaskError, SynthlearnError
from synthlearn.api import SiteTask
from synthlearn.sitework.runner import LocalRunner
from synthlearn.testing import check_runner, make_arm_context
from synthlearn.testing.tasks import EchoConfig, echo


class Reversed(LocalRunner):
    """Finishes the sites last to first; notes what it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def execute(self, task, sites, envs, inbound) -> Iterator[tuple[int, bytes]]:
        self.calls.append([s.id for s in sites])
        yield from super().execute(task, sites[::-1], envs, inbound)


class FailsAfterFirst(LocalRunner):
    """Site 0 finishes, then site 1's node dies."""

    def execute(self, task, sites, envs, inbound) -> Iterator[tuple[int, bytes]]:
        results = super().execute(task, sites, envs, inbound)
        yield next(iter(results))
        raise SiteTaskError(1, ConnectionError("node lost"))


class Stray(LocalRunner):
    def execute(self, task, sites, envs, inbound):
        yield from super().execute(task, sites, envs, inbound)
        yield 7, b"\x00"


class Forgets(LocalRunner):
    def execute(self, task, sites, envs, inbound):
        results = dict(super().execute(task, sites, envs, inbound))
        return {sid: blob for sid, blob in results.items() if sid != 2}


class Plain(LocalRunner):
    """Raises without saying which site (several were running)."""

    def execute(self, task, sites, envs, inbound):
        raise OSError("disk full")


TASK = SiteTask("echo", echo, EchoConfig(), "site id and label sums")


def _ctx(tmp_path: Path, runner: object):
    ctx = make_arm_context("local", tmp_path=tmp_path, cache=True)
    ctx.runner = runner
    return ctx


def test_every_uncached_site_goes_to_the_runner_at_once_and_each_is_kept(tmp_path: Path
                                                                        ) -> None:
    runner = Reversed()
    ctx = _ctx(tmp_path, runner)
    done: list[int] = []
    ctx.hook.synthlearn_on_site_done = lambda arm, site, outputs: done.append(site)
    out = ctx.run_sites(TASK)
    assert runner.calls == [[0, 1, 2]]
    assert sorted(out) == [0, 1, 2] and [out[s].meta["site"] for s in (0, 1, 2)] == [0, 1, 2]
    assert done == [2, 1, 0]  # announced in the order they finished
    assert ctx.ledger.bytes_to_server == sum(len(p.to_bytes()) for p in out.values())
    # a second call finds every site in the cache: the runner is not asked again
    again = _ctx(tmp_path, runner)
    assert again.run_sites(TASK)[1].meta == out[1].meta
    assert runner.calls == [[0, 1, 2]] and again.ledger.cached_sites == 3


def test_a_site_that_finished_is_kept_when_a_later_one_fails(tmp_path: Path) -> None:
    with pytest.raises(SiteFailure) as failed:
        _ctx(tmp_path, FailsAfterFirst()).run_sites(TASK)
    assert str(failed.value) == ("arm local, site 1, task echo: site failed: "
                                 "ConnectionError: node lost")
    assert isinstance(failed.value.__cause__, ConnectionError)
    runner = Reversed()
    _ctx(tmp_path, runner).run_sites(TASK)
    assert runner.calls == [[1, 2]]  # site 0 came from the cache


@pytest.mark.parametrize(("runner", "message"), [
    (Stray(), "arm local, task echo: the runner returned a result for site 7, which was not "
              "asked"),
    (Forgets(), "arm local, site 2, task echo: the runner returned no result for this site"),
    (Plain(), "arm local, task echo: site failed: OSError: disk full"),
])
def test_a_runner_that_breaks_the_contract_is_one_line_naming_what_it_can(
        tmp_path: Path, runner: object, message: str) -> None:
    with pytest.raises(SynthlearnError) as failed:
        _ctx(tmp_path, runner).run_sites(TASK)
    assert str(failed.value) == message


def test_a_sites_own_error_keeps_its_message_and_names_the_site(tmp_path: Path) -> None:
    def refuses(site, config, inbound, env):
        raise SynthlearnError("too few images", where="generator 'gan'")

    task = SiteTask("fit", refuses, None, "nothing")
    with pytest.raises(SynthlearnError) as failed:
        _ctx(tmp_path, LocalRunner()).run_sites(task)
    assert str(failed.value) == "arm local, site 0, task fit: generator 'gan': too few images"
    assert failed.value.__cause__ is None  # one line is the whole story


def test_the_local_runner_conforms() -> None:
    check_runner(LocalRunner())
