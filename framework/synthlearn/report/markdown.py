"""The human-facing part of a results directory: ``report.md`` and its PNG figures.

Everything here reads the ``metrics`` dict (the content of ``metrics.json``) and never
fails on a key that is missing or ``None``: an absent number prints as "n/a", an absent
section is left out or says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from synthlearn.data.types import ImageData
from synthlearn.text import slug

FIGURES = {
    "arms": "arms.png",
    "privacy": "privacy.png",
    "cost": "cost.png",
    "class_balance": "class_balance.png",
    "samples": "samples.png",
}
REPORT_FILE = "report.md"
KNOWN_METRICS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                 "auc": "AUC"}
_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


# --------------------------------------------------------------------------- formatting


def human_bytes(n: int) -> str:
    """A byte count in binary units: ``0 B``, ``1023 B``, ``1.2 KiB``, ``3.4 MiB``, ..."""
    n = int(n)
    if n < 0:
        return "-" + human_bytes(-n)
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _BYTE_UNITS:
        value /= 1024.0
        if round(value, 1) < 1024.0 or unit == _BYTE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _is_number(value: Any) -> bool:
    """True for a finite int or float, numpy scalars included (not bool, str, None, NaN)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, or "n/a"."""
    return f"{float(value):.{digits}f}" if _is_number(value) else "n/a"


def _bytes(value: Any) -> str:
    return human_bytes(int(value)) if _is_number(value) else "n/a"


def _count(value: Any) -> str:
    return str(int(value)) if _is_number(value) else "n/a"


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]],
           align: Sequence[str] | None = None) -> list[str]:
    """A Markdown table; ``align`` holds "l" or "r" per column (default: first left,
    others right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _value(value: Any) -> str:
    """Any JSON value for a generic table: floats to 3 decimals, long lists summarised."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (list, tuple)):
        if len(value) <= 6 and all(not isinstance(v, (list, tuple, dict)) for v in value):
            return ", ".join(_value(v) for v in value)
        return f"({len(value)} values)"
    if isinstance(value, dict):
        return f"({len(value)} fields)"
    return str(value)


def _flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    """A dict with nested dicts flattened to dotted keys; a non-dict becomes ``value``."""
    if not isinstance(record, dict):
        return {prefix or "value": record}
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _class_names(metrics: dict[str, Any]) -> list[str]:
    dataset = metrics.get("dataset") or {}
    names = [str(n) for n in dataset.get("class_names") or []]
    num = dataset.get("num_classes")
    if _is_number(num) and int(num) > len(names):
        names += [f"class {c}" for c in range(len(names), int(num))]
    return names


# --------------------------------------------------------------------------- sections


def _synthetic(metrics: dict[str, Any]) -> list[str]:
    arms = [(i, a) for i, a in enumerate(metrics.get("arms") or []) if a.get("fidelity")]
    if not arms:
        return []
    lines = ["", "## Synthetic data", "",
             "How close each arm's synthetic images are to the real test images, next to "
             "what a classifier trained on them reaches. FD is the Fréchet distance and "
             "precision/recall the k-NN precision and recall, in a fixed random-feature "
             "space (comparable within this dataset, not with Inception FID). Precision: "
             "share of synthetic images that look like real ones; recall: share of the real "
             "variety the synthetic images cover. Realism (FedGAN's realism score): share "
             "of held-out synthetic images that a logistic regression trained on the same "
             "features to tell real from synthetic takes for real, about 0.5 when it "
             "cannot tell them apart and 0 when it always can.", ""]
    header = ["arm", "site", "share", "synthetic images", "FD", "precision", "recall",
              "realism", "accuracy"]
    rows = []
    for i, arm in arms:
        fid, details = arm["fidelity"], arm.get("details") or {}
        acc = (arm.get("metrics") or {}).get("accuracy")
        pooled = fid.get("pooled") or {}
        rows.append([_arm_name(arm, i), "all", str(details.get("share", "n/a")),
                     _count(pooled.get("n_fake")), _num(pooled.get("fd"), 2),
                     _num(pooled.get("precision")), _num(pooled.get("recall")),
                     _num(pooled.get("realism")), _num(acc)])
        for site in fid.get("sites") or []:
            rows.append(["", str(site.get("site", "?")), "", _count(site.get("n_fake")),
                         _num(site.get("fd"), 2), _num(site.get("precision")),
                         _num(site.get("recall")), _num(site.get("realism")), ""])
    ref = (metrics.get("fidelity_reference") or {}).get("real_train_vs_test")
    if ref:
        rows.append(["*real training images*", "all", "", _count(ref.get("n_fake")),
                     _num(ref.get("fd"), 2), _num(ref.get("precision")),
                     _num(ref.get("recall")), _num(ref.get("realism")), ""])
    lines += _table(header, rows, ["l", "l", "l"] + ["r"] * 6)
    if ref:
        lines += ["", "The last row scores the real training images the same way: the "
                  "best a generator can hope for (its realism is the control, real against "
                  "real: about 0.5)."]
    lines += _synthetic_training(arms)
    for i, arm in arms:
        figure = (arm.get("figures") or {}).get("synthetic")
        if figure:
            lines += ["", f"### {_arm_name(arm, i)}: real and synthetic images per site", "",
                      f"![synthetic images of {_arm_name(arm, i)}]({figure})"]
    return lines


#: How the report names the steps an arm lists in ``details.steps``
#: (``synthlearn.arms.site_steps``).
STEP_NAMES = {"trained": "as trained",
              "adapt_bn": "batch-norm statistics re-estimated at the sites (`adapt_bn`)",
              "calibrate": "biases calibrated at the sites (`calibrate`)"}


def _synthetic_training(arms: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """A line per arm that trained on several synthetic sets, each drawn afresh."""
    lines = []
    for i, arm in arms:
        sets = (arm.get("details") or {}).get("sets")
        if isinstance(sets, int) and sets > 1:
            lines += ["", f"**{_arm_name(arm, i)}**: trained on {sets} synthetic sets, "
                      "each drawn afresh (`regenerate_every`)."]
    return lines


def _site_steps(arms: list[dict[str, Any]]) -> list[str]:
    """A line per arm whose model took steps at the sites after training (``adapt_bn``,
    ``calibrate``), with the test figures after each."""
    lines = []
    for i, arm in enumerate(arms):
        steps = [step for step in (arm.get("details") or {}).get("steps") or []
                 if isinstance(step, dict)]
        if steps:
            lines += ["", f"**{_arm_name(arm, i)}**, test figures after each step: "
                      + ", then ".join(
                          f"{STEP_NAMES.get(step.get('step'), step.get('step'))}: accuracy "
                          f"{_num(step.get('accuracy'))}, AUC {_num(step.get('auc'))}"
                          for step in steps) + "."]
    return lines


def _arm_name(arm: dict[str, Any], i: int) -> str:
    return str(arm.get("name") or arm.get("use") or f"arm {i}")


def _warnings(metrics: dict[str, Any]) -> list[str]:
    """The run's warnings (``metrics["warnings"]``), one bullet each; nothing when none."""
    warnings = [" ".join(str(w).split()) for w in metrics.get("warnings") or []]
    if not warnings:
        return []
    return ["## Warnings", "",
            "Things that make some figures below doubtful (also printed while the run "
            "went):", "", *(f"- {w}" for w in warnings), ""]


#: How the report spells a small count that opens a sentence.
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six",
                7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _arm_line(arm: dict[str, Any], i: int) -> str:
    """One bullet of the summary: the arm's name, its method in plain words (the
    component's one-line summary, ``arms[i].summary``) and what left each site."""
    about = " ".join(str(arm.get("summary") or "").split()).rstrip(".")
    name, use = _arm_name(arm, i), str(arm.get("use", "n/a"))
    text = f"- **{name}**" + ("" if use == name else f" (`{use}`)")
    text += f": {about}." if about else "."
    if not arm.get("private", True) and "not private" not in about.lower():
        text += " **Not private.**"
    shared = "; ".join(str(s) for s in arm.get("shared") or []) or "nothing"
    text += f" *Left each site:* {shared}."
    if arm.get("sites"):
        text += " One model per site: the table shows their mean."
    return text


def _summary(metrics: dict[str, Any]) -> list[str]:
    """What the run compared, for a reader who knows nothing of it: one lead sentence
    (data, sites, test set), then one line per arm in plain words with what left each
    site."""
    arms = metrics.get("arms") or []
    dataset = metrics.get("dataset") or {}
    sites = metrics.get("sites") or []
    if not arms:
        return ["No arms were run."]
    n_train, n_test = dataset.get("n_train"), dataset.get("n_test")
    train = f"the same {_count(n_train)} real training images" if _is_number(n_train) \
        else "the same real training images"
    test = f"the same {_count(n_test)} real held-out test images" if _is_number(n_test) \
        else "the same real held-out test images"
    ways = _plural(len(arms), "way")
    ways = NUMBER_WORDS.get(len(arms), str(len(arms))).capitalize() + ways[ways.index(" "):]
    lead = (f"{ways} to get one image classifier from {train}, "
            f"split over {_plural(len(sites), 'site')} (hospitals); every resulting "
            f"classifier was scored on {test}, which no site ever sees.")
    private = [a for a in arms if a.get("private", True)]
    tail = ("A private arm keeps every real image at its site: only what is listed "
            "reached the server (bytes per site under *What left each site*)."
            if private else "")
    return [lead, "", *(_arm_line(a, i) for i, a in enumerate(arms)),
            *(["", tail] if tail else [])]


def _attack_names(arms: list[dict[str, Any]]) -> list[str]:
    """The attacks any arm was scored by, in the order they first appear."""
    return list(dict.fromkeys(str(name) for arm in arms for name in arm.get("attacks") or {}))


def _membership(arm: dict[str, Any], attack: str) -> str:
    """An attack's membership AUC against the arm's model with its control's in
    brackets, e.g. ``0.634 (0.510)``; "n/a" when the arm was not attacked."""
    result = (arm.get("attacks") or {}).get(attack) or {}
    if not result:
        return "n/a"
    return f"{_num(result.get('auc'))} ({_num(result.get('control_auc'))})"


def _epsilon(arm: dict[str, Any]) -> str:
    """An arm's ε for the tables: its value, ∞ without a DP guarantee, n/a when the
    metrics predate the privacy entry."""
    if "privacy" not in arm:
        return "n/a"
    epsilon = (arm.get("privacy") or {}).get("epsilon")
    return "∞" if epsilon is None else _num(epsilon, 2)


def _dp_arms(arms: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, a) for i, a in enumerate(arms)
            if (a.get("privacy") or {}).get("epsilon") is not None]


def _privacy(arms: list[dict[str, Any]]) -> list[str]:
    """The differential-privacy section: each DP arm's budget, how it was spent at each
    site, and the utility-against-ε figure (only when an arm trained under DP)."""
    dp = _dp_arms(arms)
    if not dp:
        return []
    lines = ["", "## Differential privacy", "",
             "**ε** is the accountant's bound at **δ** on what each site released, for the "
             "arm's whole run (every round, every step), the largest over the sites; a "
             "smaller ε is a stronger guarantee, ∞ none. Each step clips every example's "
             "gradient and adds Gaussian noise of *noise multiplier × bound*; batches are "
             "Poisson-sampled at the *sample rate*. A site that trains several things "
             "(e.g. kr's teacher and generator) has a row for each, with one noise "
             "multiplier and the ε of all of them together.", ""]
    rows = []
    for i, arm in dp:
        privacy = arm["privacy"]
        about = privacy.get("about") or {}
        for site in privacy.get("sites") or []:
            # a site that trained several things under one budget: a row per phase,
            # each with the site's ε (their composition)
            for phase in site.get("phases") or [site]:
                label = str(site.get("site")) + (f" ({phase['phase']})" if "phase" in phase
                                                 else "")
                rows.append([_arm_name(arm, i), label,
                             _num(site.get("epsilon"), 2), f"{privacy.get('delta'):g}",
                             str(privacy.get("accountant")),
                             str(about.get("clipping", "n/a")),
                             _num(site.get("noise_multiplier"), 3),
                             _num(phase.get("sample_rate"), 3),
                             f"{phase.get('steps')} / {phase.get('planned_steps')}",
                             _num(phase.get("final_max_grad_norm"), 3)])
    lines += _table(["arm", "site", "ε", "δ", "accountant", "clipping", "noise multiplier",
                     "sample rate", "steps taken / planned", "final bound"], rows,
                    ["l"] + ["r"] * 9)
    lines += ["", f"![utility against ε]({FIGURES['privacy']})"]
    return lines


def _arms_table(arms: list[dict[str, Any]]) -> list[str]:
    """The headline table, most important first: accuracy, AUC, the DP guarantee ε,
    membership AUC (with its control) per attack, bytes; then balanced accuracy, the
    validation split's figures (when scored) and wall time."""
    with_val = any(arm.get("validation") for arm in arms)
    attacks = _attack_names(arms)
    header = ["arm", "method", "private", "accuracy", "AUC", "ε",
              *(f"membership AUC, {a} (control)" for a in attacks),
              "bytes to server", "bytes to sites", "balanced accuracy",
              *(["val accuracy", "val AUC"] if with_val else []), "wall s"]
    rows = []
    for i, arm in enumerate(arms):
        m = arm.get("metrics") or {}
        v = arm.get("validation") or {}
        private = "yes" if arm.get("private", True) else "**no** (pools raw images)"
        rows.append([_arm_name(arm, i), f"`{arm.get('use', 'n/a')}`", private,
                     _num(m.get("accuracy")), _num(m.get("auc")), _epsilon(arm),
                     *(_membership(arm, a) for a in attacks),
                     _bytes(m.get("bytes_to_server")), _bytes(m.get("bytes_to_sites")),
                     _num(m.get("balanced_accuracy")),
                     *([_num(v.get("accuracy")), _num(v.get("auc"))] if with_val else []),
                     _num(m.get("wall_s"), 1)])
    return _table(header, rows, ["l", "l", "l"] + ["r"] * (len(header) - 3))


def _how_to_read(arms: list[dict[str, Any]]) -> list[str]:
    """The lines above the headline table that say what its columns mean."""
    lines = ["How to read the table: **accuracy** and **AUC** are scored on the real "
             "held-out test set (AUC is threshold-free: 1.0 ranks every image right, 0.5 "
             "is chance)."]
    if any(not arm.get("private", True) for arm in arms):
        lines.append("An arm that pools the raw images (not private) shows what is "
                     "reachable: the upper bound for the private arms.")
    if _attack_names(arms):
        lines.append("**Membership AUC** is how well the attack tells the real images a "
                     "model learned from apart from real images it never saw (0.5: it "
                     "cannot); in brackets the same attack against a *control* model "
                     "trained without those images, which shows what chance looks like "
                     "here. A figure well above its control means the model leaks who "
                     "trained it.")
    lines.append("**Bytes** are what crossed between the sites and the server, counted as "
                 "they crossed.")
    return [" ".join(lines)]


def _per_site_results(arms: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for i, arm in enumerate(arms):
        rows = arm.get("sites") or []
        if not rows:
            continue
        keys = [k for k in KNOWN_METRICS if any(k in r for r in rows)]
        keys += [k for r in rows for k in r if k != "site" and k not in keys]
        keys = list(dict.fromkeys(keys))
        header = ["site"] + [KNOWN_METRICS.get(k, k) for k in keys]
        table_rows = [[str(r.get("site", j))] + [_value(r.get(k)) for k in keys]
                      for j, r in enumerate(rows)]
        lines += ["", f"### {_arm_name(arm, i)}: every site", "",
                  "Each site's own model on the full test set (the table above shows "
                  "their mean).", "", *_table(header, table_rows)]
    return lines


#: Fidelity figures an arm may record per round (``record_round(..., fd=...)``).
ROUND_FIDELITY: tuple[str, ...] = ("fd", "precision", "recall", "realism")


def _cost(arms: list[dict[str, Any]]) -> list[str]:
    """The accuracy-against-bytes figure and, for multi-round arms, every round."""
    if not arms:
        return []
    lines = ["", "## Cost: accuracy against bytes exchanged", "",
             "Each arm's test accuracy against the bytes that crossed between sites and "
             "server (both ways): a multi-round arm is a line through its rounds, a "
             "one-shot arm a single point.", "", f"![cost]({FIGURES['cost']})"]
    for i, arm in enumerate(arms):
        curve = [p for p in arm.get("curve") or [] if p.get("round") is not None]
        if not curve:
            continue
        scored = [key for key in ("accuracy", "auc") if any(key in p for p in curve)]
        generated = [key for key in ROUND_FIDELITY if any(key in p for p in curve)]
        rows = [[str(p["round"]), *(_num(p.get(k)) for k in scored),
                 *(_num(p.get(k), 2 if k == "fd" else 3) for k in generated),
                 _bytes(p.get("bytes_to_server")), _bytes(p.get("bytes_to_sites"))]
                for p in curve]
        lines += ["", f"### {_arm_name(arm, i)}: every round", "",
                  *(["The arm's generator after each round against the real test images "
                     "(fd lower is closer; realism 0.5: indistinguishable)", ""]
                    if generated else []),
                  *_table(["round", *(k if k != "auc" else "AUC" for k in scored),
                           *generated, "to server so far", "to sites so far"], rows)]
    return lines


def _shared(arms: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## What left each site", ""]
    if not arms:
        return lines + ["No arms were run."]
    for i, arm in enumerate(arms):
        shared = arm.get("shared") or []
        what = "; ".join(str(s) for s in shared) if shared else "nothing"
        line = f"- **{_arm_name(arm, i)}** (`{arm.get('use', 'n/a')}`): {what}."
        if not arm.get("private", True):
            line += " **Not private.**"
        cached = arm.get("cached_sites")
        line += f" Sites whose output came from the cache: {_count(cached or 0)}."
        lines.append(line)
        for entry in arm.get("site_bytes") or []:
            lines.append(f"  - site {entry.get('site', '?')}: "
                         f"{_bytes(entry.get('bytes_to_server'))} to the server, "
                         f"{_bytes(entry.get('bytes_to_sites'))} back")
    return lines


ATTACK_COLUMNS = (("auc", "AUC"), ("control_auc", "control AUC"),
                  ("tpr_at_fpr_0.01", "TPR at 1% FPR"),
                  ("control_tpr_at_fpr_0.01", "control TPR at 1% FPR"),
                  ("tpr_at_fpr_0.001", "TPR at 0.1% FPR"),
                  ("balanced_accuracy", "balanced accuracy"))


def _attacks(arms: list[dict[str, Any]]) -> list[str]:
    by_attack: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for i, arm in enumerate(arms):
        for attack, result in (arm.get("attacks") or {}).items():
            by_attack.setdefault(str(attack), []).append((_arm_name(arm, i), result or {}))
    if not by_attack:
        return []
    lines = ["", "## Membership inference", "",
             "Each attack scores equal numbers of members (real training images the released "
             "model learned from) and non-members (real held-out images). AUC 0.5 and a TPR "
             "equal to the FPR mean the attacker learns nothing; the *control* is the same "
             "attack against the arm's procedure re-run without any of the candidates, and "
             "shows what chance looks like here."]
    notes: list[str] = []
    for attack, results in by_attack.items():
        header = ["arm", *(label for _, label in ATTACK_COLUMNS), "members / non-members",
                  "reference models"]
        rows = []
        for arm, result in results:
            reference = result.get("reference")
            ref_text = "none" if not reference else (
                f"{_value(result.get('reference_models'))} × {reference}"
                + (" (approximation)" if reference == "real" else ""))
            rows.append([arm, *(_num(result.get(key)) for key, _ in ATTACK_COLUMNS),
                         f"{_count(result.get('n_members'))} / "
                         f"{_count(result.get('n_nonmembers'))}", ref_text])
            for key, reason in (result.get("not_available") or {}).items():
                notes.append(f"- {attack}, {arm}: {key} not available: {reason}.")
        lines += ["", f"### {attack}", "", *_table(header, rows)]
    if notes:
        lines += ["", *dict.fromkeys(notes)]
    for i, arm in enumerate(arms):
        roc = (arm.get("figures") or {}).get("roc")
        if roc:
            lines += ["", f"![ROC {_arm_name(arm, i)}]({roc})"]
    return lines


def _memorisation(arms: list[dict[str, Any]]) -> list[str]:
    """Per synthetic arm and site: how close the synthetic images lie to the site's own
    images against images it never had, and the near-copies (dropped or found)."""
    rows = []
    for i, arm in enumerate(arms):
        screened = _screenings(arm)
        for entry in (arm.get("memorisation") or {}).get("sites") or []:
            pixel, feature = entry.get("pixel") or {}, entry.get("feature") or {}
            rows.append([_arm_name(arm, i), str(entry.get("site", "?")),
                         _num(pixel.get("closer_to_members")), _num(pixel.get("near_copies")),
                         _num(feature.get("closer_to_members")),
                         _num(feature.get("near_copies")),
                         screened.get(entry.get("site")) or "not filtered"])
    if not rows:
        return []
    return ["", "## Synthetic-data memorisation", "",
            "For each synthetic image, its distance to the closest image its generator was "
            "fitted on (member) and to the closest of as many real images it never saw. "
            "*Closer to members* near 0.5 means no copying; a *near-copy* is closer to a "
            "member than 99% of the members are to each other (by default). A site's "
            "filter rejects candidates before they leave and redraws them with the same "
            "conditions.", "",
            *_table(["arm", "site", "closer to members (pixels)", "near-copies (pixels)",
                     "closer to members (features)", "near-copies (features)",
                     "filtered at the site"], rows), *_filter_facts(arms)]


def _filter_facts(arms: list[dict[str, Any]]) -> list[str]:
    """What each site's filter set when it was fitted (its ``describe()``: a threshold
    and its calibration; a chain's parts prefixed with their names), per arm and site."""
    rows = []
    for i, arm in enumerate(arms):
        for detail in (arm.get("details") or {}).get("per_site") or []:
            record = detail.get("screening")
            if not isinstance(record, dict):
                continue
            facts = record.get("about") or {}
            rows.append([_arm_name(arm, i), str(detail.get("site", "?")),
                         str(record.get("filter", "?")),
                         ", ".join(f"{key} {_value(value)}" for key, value in facts.items())
                         or "none reported"])
    if not rows:
        return []
    return ["", "### What each site's filter set", "",
            *_table(["arm", "site", "filter", "facts"], rows, ["l", "r", "l", "l"])]


def _filter_effect(arms: list[dict[str, Any]]) -> list[str]:
    """Each filtered arm beside its unfiltered twin (``unfiltered_twin``: the same arm of
    the run without the filter): test and validation figures, each attack's membership
    AUC with its control, and per site the screening and the memorisation figures, each
    as ``without → with``."""
    by_name = {arm.get("name"): arm for arm in arms}
    pairs = [(i, arm, by_name[arm["unfiltered_twin"]]) for i, arm in enumerate(arms)
             if arm.get("unfiltered_twin") in by_name]
    if not pairs:
        return []

    def change(before: Any, after: Any) -> str:
        return f"{_num(before)} → {_num(after)}"

    attacks = _attack_names([arm for _, arm, _ in pairs])
    rows, site_rows = [], []
    for i, arm, twin in pairs:
        rows.append([_arm_name(arm, i), str(twin.get("name")),
                     *(change((twin.get(part) or {}).get(key), (arm.get(part) or {}).get(key))
                       for part, key in (("metrics", "accuracy"), ("metrics", "auc"),
                                         ("validation", "accuracy"), ("validation", "auc"))),
                     *(f"{_membership(twin, name)} → {_membership(arm, name)}"
                       for name in attacks)])
        before = {e.get("site"): e for e in (twin.get("memorisation") or {}).get("sites") or []}
        screened = _screenings(arm)
        for entry in (arm.get("memorisation") or {}).get("sites") or []:
            site = entry.get("site")
            old, new = (before.get(site) or {}).get("pixel") or {}, entry.get("pixel") or {}
            site_rows.append([_arm_name(arm, i), str(site),
                              screened.get(site) or "not filtered",
                              change(old.get("closer_to_members"), new.get("closer_to_members")),
                              change(old.get("near_copies"), new.get("near_copies"))])
    lines = ["", "## What each filter changed", "",
             "Each filtered arm beside the arm of this run that is the same without the "
             "filter (same generator fits, training and audit), as *without → with*. "
             "Membership AUCs carry their control's in brackets.", "",
             *_table(["arm", "without the filter", "accuracy", "AUC", "val accuracy",
                      "val AUC", *(f"{name} membership AUC" for name in attacks)], rows)]
    if site_rows:
        lines += ["", *_table(["arm", "site", "filtered at the site",
                               "closer to members (pixels)", "near-copies (pixels)"],
                              site_rows)]
    return lines


def _screenings(arm: dict[str, Any]) -> dict[Any, str | None]:
    """Each site's screening of an arm, in words, by site id (None: not filtered)."""
    return {d.get("site"): _screening_text(d.get("screening"))
            for d in (arm.get("details") or {}).get("per_site") or []}


def _screening_text(record: Any) -> str | None:
    """``12 reid of 842 drawn (2 rounds)``: a site's screening record, or None."""
    if not isinstance(record, dict):
        return None
    rejected = record.get("rejected") or {}
    reasons = ", ".join(f"{_value(count)} {reason}" for reason, count in sorted(rejected.items())
                        ) or "0 rejected"
    unfilled = record.get("unfilled")
    return (f"{reasons} of {_value(record.get('drawn'))} drawn "
            f"({_value(record.get('rounds'))} redraw rounds"
            + (f", {_value(unfilled)} left out" if unfilled else "") + ")")


def _sites(metrics: dict[str, Any]) -> list[str]:
    sites = metrics.get("sites") or []
    lines = ["", "## Sites", ""]
    if not sites:
        return lines + ["No sites."]
    names = _class_names(metrics)
    width = max([len(names)] + [len(s.get("class_counts") or []) for s in sites])
    names += [f"class {c}" for c in range(len(names), width)]
    rows, totals, total_n = [], [0] * width, 0
    for j, site in enumerate(sites):
        counts = list(site.get("class_counts") or [])
        counts += [0] * (width - len(counts))
        n = site.get("n", sum(counts))
        total_n += int(n) if _is_number(n) else 0
        totals = [t + (int(c) if _is_number(c) else 0) for t, c in zip(totals, counts, strict=True)]
        rows.append([str(site.get("site", j)), _count(n)] + [_count(c) for c in counts])
    rows.append(["**total**", str(total_n)] + [str(t) for t in totals])
    return lines + ["Training images each site holds, by class.", "",
                    *_table(["site", "images", *names], rows), "",
                    f"![class balance]({FIGURES['class_balance']})", "",
                    f"![samples]({FIGURES['samples']})"]


def _setup(metrics: dict[str, Any]) -> list[str]:
    dataset = dict(metrics.get("dataset") or {})
    model = dict(metrics.get("model") or {})
    lines = ["", "## Setup", ""]
    if dataset:
        names = _class_names(metrics)
        size = dataset.get("image_size")
        channels = dataset.get("channels")
        colour = {1: "grey", 3: "RGB"}.get(channels, f"{channels} channels") \
            if channels is not None else "n/a"
        text = f"- **Dataset** `{dataset.get('use', 'n/a')}`: {len(names)} classes"
        if names:
            text += f" ({', '.join(names)})"
        if isinstance(size, (list, tuple)) and len(size) == 2:
            text += f", {size[0]}×{size[1]} pixels"
        text += f", {colour}; {_count(dataset.get('n_train'))} training images, " \
                f"{_count(dataset.get('n_test'))} test images."
        lines.append(text)
        if dataset.get("attributes"):
            lines.append(f"  Phenotype attributes: "
                         f"{', '.join(str(a) for a in dataset['attributes'])}.")
        shown = {"use", "num_classes", "class_names", "image_size", "channels", "n_train",
                 "n_test", "attributes"}
        lines += [f"  - {k}: {_value(v)}" for k, v in dataset.items() if k not in shown]
    if model:
        text = f"- **Model** `{model.get('use', 'n/a')}`"
        details = [f"{k} {model[k]}" for k in ("arch", "stem") if model.get(k) is not None]
        if _is_number(model.get("params")):
            details.append(f"{int(model['params']) / 1e6:.2f} M parameters")
        if details:
            text += ": " + ", ".join(details)
        lines.append(text + ".")
        shown = {"use", "arch", "stem", "params"}
        lines += [f"  - {k}: {_value(v)}" for k, v in model.items() if k not in shown]
    if not dataset and not model:
        lines.append("No dataset or model description.")
    return lines


# --------------------------------------------------------------------------- public API


def render_report(metrics: dict) -> str:
    """``report.md`` for a run: the Markdown text, ending in a newline.

    Sections: title (recipe name and seed), warnings (only when the run gave any:
    ``metrics["warnings"]``), what was compared (each arm in plain words and what left
    its sites), the arms table (accuracy, AUC, membership AUC with its control, bytes;
    with the
    arms figure, the test figures after each step an arm's model took at the sites, and
    every site's own result for arms scored per site), cost (the
    accuracy-against-bytes figure and every round of multi-round arms), synthetic data
    (when an arm made some), what left each site, attacks (only when an arm was
    attacked), the sites (class counts, class balance and sample figures) and the
    dataset and model. Accuracy, balanced accuracy
    and AUC have 3 decimals, wall time 1, bytes binary units; a missing or ``None``
    value prints "n/a".
    """
    arms = list(metrics.get("arms") or [])
    name = metrics.get("name", "unnamed run")
    lines = [f"# {name} (seed {metrics.get('seed', 'n/a')})", ""]
    facts = []
    if metrics.get("synthlearn_version"):
        facts.append(f"synthlearn {metrics['synthlearn_version']}")
    if _is_number(metrics.get("wall_s")):
        facts.append(f"total wall time {_num(metrics['wall_s'], 1)} s")
    if facts:
        lines += [" · ".join(facts), ""]
    lines += _warnings(metrics)

    lines += ["## What was compared", "", *_summary(metrics), "", "## Results", ""]
    if arms:
        lines += [*_how_to_read(arms), "", *_arms_table(arms), "",
                  f"![arms]({FIGURES['arms']})"]
        lines += _site_steps(arms)
        lines += _per_site_results(arms)
    else:
        lines.append("No arms were run.")
    lines += _privacy(arms)
    lines += _cost(arms)
    lines += _synthetic(metrics)
    lines += _shared(arms)
    lines += _attacks(arms)
    lines += _memorisation(arms)
    lines += _filter_effect(arms)
    lines += _sites(metrics)
    lines += _setup(metrics)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(run_dir: Path, metrics: dict, site_data: list[tuple[int, ImageData]],
                 class_names: list[str], seed: int,
                 synthetic: dict[str, dict[int, ImageData]] | None = None,
                 rocs: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Write ``report.md``, ``samples.png``, ``class_balance.png``, ``arms.png``,
    ``cost.png`` (and ``privacy.png`` when an arm trained under DP) into
    ``run_dir`` (created if needed) and return the file names written.

    ``site_data`` holds each site's id and training images (for the sample grid, drawn
    with ``seed``); the class balance comes from ``metrics["sites"]``, or from
    ``site_data`` when the metrics have no sites. ``synthetic`` maps an arm name to each
    site's synthetic images: one ``synthetic-<arm>.png`` per arm sets them beside the
    site's real images. ``rocs`` maps an arm name to its attacks' ROC curves (against
    the released model and the control): one ``roc-<arm>.png`` per arm.
    """
    from synthlearn.report import figures  # matplotlib loads only when a report is written

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # a deployment's sites (data: exported) are known by their counts only
    held = [(sid, data) for sid, data in site_data if isinstance(data, ImageData)]
    for arm, pools in (synthetic or {}).items():
        name = f"synthetic-{slug(arm)}.png"
        figures.synthetic_grid(run_dir / name, held, pools, class_names, seed=seed)
        written.append(name)
    for arm, curves in (rocs or {}).items():
        name = f"roc-{slug(arm)}.png"
        figures.roc_chart(run_dir / name, curves, f"Membership inference: {arm}")
        written.append(name)
    if site_data and not held:
        figures.message_figure(run_dir / FIGURES["samples"],
                               "the sites' images stay at their nodes (data: exported)")
    else:
        figures.sample_grid(run_dir / FIGURES["samples"], held, class_names, seed=seed)
    sites = metrics.get("sites") or [
        {"site": sid, "n": len(data), "class_counts": data.class_counts(len(class_names))}
        for sid, data in site_data
    ]
    figures.class_balance(run_dir / FIGURES["class_balance"], sites, class_names)
    figures.arms_chart(run_dir / FIGURES["arms"], list(metrics.get("arms") or []))
    figures.cost_chart(run_dir / FIGURES["cost"], list(metrics.get("arms") or []))
    if _dp_arms(list(metrics.get("arms") or [])):
        figures.privacy_chart(run_dir / FIGURES["privacy"], list(metrics.get("arms") or []))
        written.append(FIGURES["privacy"])
    (run_dir / REPORT_FILE).write_text(render_report(metrics), encoding="utf-8", newline="\n")
    return [REPORT_FILE, FIGURES["samples"], FIGURES["class_balance"], FIGURES["arms"],
            FIGURES["cost"], *written]
