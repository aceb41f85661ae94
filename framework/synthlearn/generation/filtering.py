"""Screening synthetic candidates at a site before they leave it (kind ``filter``).

An arm that releases synthetic images and has a ``filter:`` slot builds the filter at
each site (``site_filter``: fitted on the site's own images) and passes every drawn pool
through ``screened_pool``: the filter names a reason for each candidate it rejects, the
rejected candidates are rendered again from their own conditions (class and
attributes) with a fresh seed, and the new ones are screened in turn, up to
``MAX_REDRAW_ROUNDS`` rounds. So the released pool keeps the class mix it was drawn
with; candidates still rejected after the last round are left out and counted as
``unfilled``. What the site sends about the screening is a ``Screening`` (counts and the
filter's ``describe()``), checked at the server by ``received_screening``.

Several filters in one slot (``filter: [reid, label-match]``, Trichotomy's two screens)
make a ``FilterChain``: a candidate leaves only if every filter keeps it. Each candidate
is screened in the recipe's order and counted under the reason of the first filter that
rejects it (a later filter sees only what the earlier ones kept). Every part is fitted
with the seed a filter alone in the slot gets, so ``[reid, near-copy]`` rejects what
``reid`` alone rejects, and more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from synthlearn import params
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.generation.sharing import generator_label, render_conditions
from synthlearn.notices import warn
from synthlearn.sitework.received import received_count
from synthlearn.sitework.sites import Site, SiteEnv, derive_seed

if TYPE_CHECKING:
    from synthlearn.recipe import Arm

#: Most rounds in which rejected candidates are drawn again.
MAX_REDRAW_ROUNDS = 10

#: Longest reason a filter may give, and most distinct reasons a site may report.
MAX_REASON = 40
MAX_REASONS = 16

#: Most facts (``describe()`` entries) the server keeps of a site's filter: 8 for each
#: part of the longest chain (``MAX_CHAIN``), and the longest text fact it keeps.
MAX_FACTS = 64
MAX_FACT_TEXT = 80

#: Share of the candidates drawn that, once rejected, makes the released pool doubtful:
#: it is then mostly what the filter lets through, not what the generator makes.
REJECTED_WARNING = 0.5

#: The slot an arm declares for its filter (of kind ``filter``).
FILTER_SLOT = "filter"


def refuse_filter_under_dp(slots: Mapping[str, Any]) -> None:
    """For an arm's ``dp_steps``: a filter compares the released images with the site's
    own, outside any DP budget, so an arm under DP cannot take one."""
    if FILTER_SLOT in slots:
        raise SynthlearnError("a filter compares the released images with the site's "
                              "own outside the DP budget: remove the arm's filter")


def refuse_filter_without_samples(slots: Mapping[str, Any], share: str) -> None:
    """For an arm's ``check_slots``: a filter screens images at the site, so it needs
    ``share: samples`` (a generator that leaves the site cannot be screened there)."""
    if FILTER_SLOT in slots and share != "samples":
        raise SynthlearnError("a filter needs share: samples (a generator that leaves the "
                              "site cannot be screened there)")


@attrs.define
class Screening:
    """What a filter did to one site's pools: candidates ``drawn`` (first draws and
    redraws), ``rejected`` per reason, redraw ``rounds`` taken, candidates still
    rejected after the last round (``unfilled``: left out) and the filter's own facts."""

    filter: str
    drawn: int = 0
    rejected: dict[str, int] = attrs.field(factory=dict)
    rounds: int = 0
    unfilled: int = 0
    about: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (what crosses in the site output's metadata)."""
        return {"filter": self.filter, "drawn": self.drawn, "rejected": dict(self.rejected),
                "rounds": self.rounds, "unfilled": self.unfilled, "about": dict(self.about)}


def site_filter(site: Site, env: SiteEnv) -> tuple[Any, Screening] | None:
    """The arm's filter (``env.slots["filter"]``; a ``FilterChain`` of the parts when the
    recipe lists several) fitted on the site's images, with an empty record, or None
    when the arm has no filter."""
    component = env.slots.get(FILTER_SLOT)
    if component is None:
        return None
    screen = component.build()
    if isinstance(screen, list):  # a ComponentChain's parts
        screen = FilterChain(screen, [part.use for part in component.parts])
    screen.fit(site.data, derive_seed(env.seed, FILTER_SLOT), progress=env.progress)
    return screen, Screening(filter=component.use)


class FilterChain:
    """Several filters applied in order (kind ``filter``'s contract: ``fit``, ``screen``,
    ``describe``); ``names`` (the parts' ``use``) label their verdicts in messages and
    their facts in ``describe`` (with the position too, when a name repeats)."""

    def __init__(self, filters: Sequence[Any], names: Sequence[str]) -> None:
        if len(filters) != len(names) or not filters:
            raise ValueError("a filter chain needs one name per filter, and a filter")
        self.filters = list(filters)
        repeated = len(set(names)) < len(names)
        self.names = [f"{i}.{name}" if repeated else name for i, name in enumerate(names)]

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        """Fit every part on the site's images with ``seed``, the seed a filter alone in
        the slot gets: a filter judges alike alone and in a chain."""
        for part in self.filters:
            part.fit(real, seed, progress=progress)

    def screen(self, candidates: ImageData) -> list[str | None]:
        """The first rejecting part's reason for each candidate, None if all keep it."""
        reasons: list[str | None] = [None] * len(candidates)
        todo = np.arange(len(candidates))
        for name, part in zip(self.names, self.filters, strict=True):
            if not len(todo):
                break
            verdict = checked_reasons(part.screen(candidates.subset(todo)), len(todo),
                                      f"filter {name!r}")
            for index, reason in zip(todo.tolist(), verdict, strict=True):
                reasons[index] = reason
            todo = todo[np.array([reason is None for reason in verdict], dtype=bool)]
        return reasons

    def describe(self) -> Mapping[str, Any]:
        """Every part's facts, each key prefixed with the part's name (``reid.threshold``)."""
        return {f"{name}.{key}": value for name, part in zip(self.names, self.filters,
                                                              strict=True)
                for key, value in part.describe().items()}


def screen_site_pools(pools: Sequence[ImageData], site: Site, env: SiteEnv, generator: Any,
                      scheme: Any, stats: dict[str, Any], set_seeds: Sequence[int]
                      ) -> tuple[list[ImageData], dict[str, Any] | None]:
    """Site work for an arm that sends synthetic ``pools`` (one per set, drawn with
    ``set_seeds``): with a filter in the arm, each pool screened by it (``site_filter``,
    ``screened_pool``; rejected candidates re-rendered from their own conditions by
    ``generator`` and ``scheme``, a seed of their own per set and round) and all cut to
    one size (a model trained on redrawn sets keeps one size). Returns the pools and the
    screening record's JSON for the payload's meta under ``FILTER_SLOT`` (None, and the
    pools as they are, without a filter)."""
    screening = site_filter(site, env)
    if screening is None:
        return list(pools), None
    screen, record = screening
    label = generator_label(env.slots["generator"])
    shape = (env.in_chans, *env.image_size)

    def redraw_for(seed: int) -> Callable[[ImageData, int], np.ndarray]:
        def redraw(rejected: ImageData, round_: int) -> np.ndarray:
            return render_conditions(generator, scheme, stats, rejected.labels,
                                     rejected.attributes, derive_seed(seed, "redraw", round_),
                                     label=label, image_shape=shape)
        return redraw

    screened = [screened_pool(pool, screen, redraw_for(seed), record,
                              label=f"filter {env.slots[FILTER_SLOT].use!r}")
                for pool, seed in zip(pools, set_seeds, strict=True)]
    size = min(len(pool) for pool in screened)
    record.about = dict(screen.describe())
    return [pool.subset(np.arange(size)) for pool in screened], record.to_json()


def checked_reasons(verdict: Any, n: int, label: str) -> list[str | None]:
    """A filter's verdict on ``n`` candidates, checked: one None or short string each."""
    try:
        reasons = list(verdict)
    except TypeError:
        raise SynthlearnError(f"{label}: screen returned {type(verdict).__name__}, expected "
                              "one reason (or None) per candidate") from None
    if len(reasons) != n:
        raise SynthlearnError(f"{label}: screen returned {len(reasons)} verdicts for {n} "
                              "candidates")
    for reason in reasons:
        if reason is not None and (not isinstance(reason, str) or not reason
                                   or len(reason) > MAX_REASON):
            raise SynthlearnError(f"{label}: screen gave {reason!r}; a verdict is None (keep)"
                                  f" or a reason of 1..{MAX_REASON} characters")
    return reasons


def screened_pool(pool: ImageData, screen: Any, redraw: Callable[[ImageData, int], np.ndarray],
                  record: Screening, *, label: str = "filter",
                  max_rounds: int = MAX_REDRAW_ROUNDS) -> ImageData:
    """``pool`` with every candidate ``screen`` rejects replaced by a redrawn one of the
    same conditions (``redraw(rejected, round)`` returns their new uint8 images), up to
    ``max_rounds`` rounds; what stays rejected is left out. Counts go to ``record``."""
    images = pool.images.copy()
    todo = np.arange(len(pool))
    record.drawn += len(pool)
    for round_ in range(max_rounds + 1):
        candidates = ImageData(images=images[todo], labels=pool.labels[todo],
                               attributes={k: v[todo] for k, v in pool.attributes.items()})
        reasons = checked_reasons(screen.screen(candidates), len(todo), label)
        rejected = np.array([r is not None for r in reasons], dtype=bool)
        for reason in reasons:
            if reason is not None:
                record.rejected[reason] = record.rejected.get(reason, 0) + 1
        todo = todo[rejected]
        if not len(todo) or round_ == max_rounds:
            break
        record.rounds = max(record.rounds, round_ + 1)
        fresh = redraw(pool.subset(todo), round_)
        images[todo] = fresh
        record.drawn += len(todo)
    record.unfilled += len(todo)
    keep = np.setdiff1d(np.arange(len(pool)), todo)
    return ImageData(images=images[keep], labels=pool.labels[keep],
                     attributes={k: v[keep] for k, v in pool.attributes.items()})


def received_screening(meta: Mapping[str, Any], limit: int, source: str) -> dict[str, Any]:
    """The screening record a site sent (``Screening.to_json``), checked before the
    server keeps it: counts in range, at most ``MAX_REASONS`` short reasons, and the
    filter's facts as ``received_facts`` keeps them."""
    record = meta.get(FILTER_SLOT)
    if not isinstance(record, dict):
        raise SynthlearnError("the site's screening record is missing or not a JSON object",
                              where=source)
    out: dict[str, Any] = {"filter": str(record.get("filter"))[:MAX_REASON]}
    for key in ("drawn", "rounds", "unfilled"):
        out[key] = received_count(record, key, 0, limit, source)
    rejected = record.get("rejected")
    if (not isinstance(rejected, dict) or len(rejected) > MAX_REASONS
            or any(not isinstance(k, str) or len(k) > MAX_REASON for k in rejected)):
        raise SynthlearnError(f"the screening record's 'rejected' must map at most "
                              f"{MAX_REASONS} reasons to counts", where=source)
    out["rejected"] = {k: received_count(rejected, k, 0, limit, source)
                       for k in sorted(rejected)}
    out["about"] = received_facts(record.get("about", {}), source)
    rejected_share = sum(out["rejected"].values()) / max(1, out["drawn"])
    if rejected_share > REJECTED_WARNING:
        warn(f"the filter {out['filter']!r} rejected {rejected_share:.0%} of the "
             f"{out['drawn']} candidates drawn: the released images are mostly what it lets "
             "through (a generator that copies its images, or a filter that matches "
             "distinct images: see its false-match rate)", where=source)
    return out


def received_facts(about: Any, source: str) -> dict[str, Any]:
    """The filter's facts a site sent (its ``describe()``), checked: a JSON object whose
    first ``MAX_FACTS`` numbers, booleans and short texts are kept under keys of at most
    ``MAX_REASON`` characters. What is left out is named in a warning, not dropped
    silently; anything but an object is refused."""
    if not isinstance(about, dict):
        raise SynthlearnError("the screening record's 'about' (the filter's facts) must be "
                              "a JSON object", where=source)
    kept: dict[str, Any] = {}
    left_out: list[str] = []
    for key, value in about.items():
        name = str(key)
        fits = (isinstance(value, (int, float, bool))
                or (isinstance(value, str) and len(value) <= MAX_FACT_TEXT))
        if fits and len(name) <= MAX_REASON and len(kept) < MAX_FACTS:
            kept[name] = value
        else:
            left_out.append(name[:MAX_REASON])
    if left_out:
        shown = ", ".join(repr(name) for name in left_out[:4])
        more = f" and {len(left_out) - 4} more" if len(left_out) > 4 else ""
        warn(f"left out {len(left_out)} of the filter's {len(about)} facts ({shown}{more}): "
             f"a fact is a number, a boolean or a text of at most {MAX_FACT_TEXT} characters, "
             f"under a key of at most {MAX_REASON}, and at most {MAX_FACTS} are kept",
             where=source)
    return kept


def filter_reasons(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every rejection reason the sites' records name, sorted (the report's columns)."""
    return sorted({reason for record in records for reason in record.get("rejected", {})})


def unfiltered_twins(arms: Sequence[Arm]) -> dict[str, str]:
    """For each arm with a filter, the first other arm of the recipe that is the same arm
    without one: same component, params, other slots and downstream model. The run
    records it (``unfiltered_twin``) and the report sets the two side by side, which is
    what the filter changed: on the same generator fits (the site cache shares them), the
    same training and the same audit. An arm with no such twin gets none."""
    conv = params.make_converter()

    def form(arm: Arm) -> tuple[str, str]:
        spec = arm.component.to_dict(conv)
        spec.pop(FILTER_SLOT, None)
        return (json.dumps(spec, sort_keys=True, default=str),
                json.dumps(arm.model.to_dict(conv), sort_keys=True, default=str))

    plain: dict[tuple[str, str], str] = {}
    for arm in arms:
        if FILTER_SLOT not in arm.component.slots:
            plain.setdefault(form(arm), arm.name)
    filtered = {arm.name: form(arm) for arm in arms if FILTER_SLOT in arm.component.slots}
    return {name: plain[key] for name, key in filtered.items() if key in plain}
