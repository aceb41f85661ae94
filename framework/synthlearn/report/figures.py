"""PNG figures of a run report: sample grids, class balance, the arms chart, accuracy
against bytes exchanged.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never
through ``pyplot``: no backend is switched, no global figure registry is touched, and a
figure is freed as soon as it is saved. PNGs are written without the "Software"
metadata entry, so the same data gives the same bytes on the same machine.

Every figure goes through :func:`new_figure` and :func:`save_figure`; a new kind of plot
(ROC curves on log-log axes, accuracy against bytes exchanged, ...) is one more function
built from the same helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from synthlearn.data.types import ImageData

DPI = 100
ACCURACY_COLOR = "#4C72B0"
BALANCED_COLOR = "#DD8452"
NOT_PRIVATE_COLOR = "#B22222"
MUTED_COLOR = "#888888"


# --------------------------------------------------------------------------- helpers


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas, constrained layout."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` (parents created) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png", dpi=DPI, facecolor="white",
                    metadata={"Software": None})
    finally:
        fig.clear()


def message_figure(path: Path, message: str, width: float = 4.0, height: float = 1.2) -> None:
    """A small PNG holding only ``message``: what a figure shows when there is no data."""
    fig = new_figure(width, height)
    fig.text(0.5, 0.5, message, ha="center", va="center", color=MUTED_COLOR, fontsize=11)
    save_figure(fig, path)


def class_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours, one per class (tab10, tab20, then evenly over viridis)."""
    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 1.0, n)]


def class_name(class_names: Sequence[str], c: int) -> str:
    """The name of class ``c``, or ``"class c"`` when ``class_names`` does not cover it."""
    return str(class_names[c]) if 0 <= c < len(class_names) else f"class {c}"


def is_number(value: Any) -> bool:
    """True for a finite int or float (not bool, not None, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value))


def _bare(ax: Axes) -> None:
    """No ticks, light frame: the look of one image panel."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#CCCCCC")


EMPTY_CELL = 238  # the light grey of a cell that marks a class with no images


def as_rgb(image: np.ndarray) -> np.ndarray:
    """One (C, H, W) uint8 image as (H, W, 3): 3 or 4 channels as colour (alpha dropped),
    otherwise channel 0 as grey."""
    if image.shape[0] in (3, 4):
        return np.transpose(image[:3], (1, 2, 0))
    return np.repeat(image[0][:, :, None], 3, axis=2)


class Mosaic:
    """Image cells laid out on one white canvas: ``rows`` x ``groups * per_group``
    cells, a thin gap between cells and a wider one between groups of columns.

    One canvas drawn with a single ``imshow`` stands for what would otherwise be one
    axes per image: a report's grids hold hundreds of images, and an axes each made
    writing them take seconds per figure.
    """

    def __init__(self, rows: int, groups: int, per_group: int, height: int, width: int):
        self.per_group = per_group
        self.height, self.width = height, width
        self.notes: list[tuple[float, float, str]] = []
        self.gap = max(1, round(max(height, width) / 10))
        self.group_gap = 4 * self.gap
        self.canvas = np.full((rows * (height + self.gap) + self.gap,
                               groups * (per_group * (width + self.gap) + self.group_gap)
                               - self.group_gap + self.gap, 3), 255, dtype=np.uint8)

    def origin(self, row: int, column: int) -> tuple[int, int]:
        """The top-left pixel of the cell at ``row``, ``column``."""
        group, within = divmod(column, self.per_group)
        x = self.gap + group * (self.per_group * (self.width + self.gap) + self.group_gap) \
            + within * (self.width + self.gap)
        return self.gap + row * (self.height + self.gap), x

    def centre(self, row: int, column: int) -> tuple[float, float]:
        """The (x, y) of the centre of a cell, in the canvas's pixel coordinates."""
        y, x = self.origin(row, column)
        return x + (self.width - 1) / 2, y + (self.height - 1) / 2

    def group_centre(self, group: int) -> float:
        """The x of the centre of a group of columns."""
        first = self.centre(0, group * self.per_group)[0]
        last = self.centre(0, group * self.per_group + self.per_group - 1)[0]
        return (first + last) / 2

    def put(self, row: int, column: int, image: np.ndarray) -> None:
        """Place one (C, H, W) uint8 image in a cell (cropped to the cell if larger)."""
        rgb = as_rgb(image)[: self.height, : self.width]
        y, x = self.origin(row, column)
        self.canvas[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb

    def mark_empty(self, row: int, column: int, note: str = "none") -> None:
        """Fill a cell light grey and write ``note`` in it: the class has no images there."""
        y, x = self.origin(row, column)
        self.canvas[y:y + self.height, x:x + self.width] = EMPTY_CELL
        self.notes.append((*self.centre(row, column), note))

    def draw(self, ax: Axes, row_labels: Sequence[str] = (),
             group_labels: Sequence[str] = ()) -> None:
        """Show the canvas on ``ax`` without ticks, with ``row_labels`` on the left and
        ``group_labels`` above the groups of columns."""
        ax.imshow(self.canvas, interpolation="nearest", aspect="equal")
        _bare(ax)
        for x, y, note in self.notes:
            ax.text(x, y, note, ha="center", va="center", color=MUTED_COLOR, fontsize=8,
                    style="italic")
        if row_labels:
            ax.set_yticks([self.centre(r, 0)[1] for r in range(len(row_labels))],
                          list(row_labels), fontsize=9)
        if group_labels:
            ax.xaxis.tick_top()
            ax.set_xticks([self.group_centre(g) for g in range(len(group_labels))],
                          list(group_labels), fontsize=9)
        ax.tick_params(length=0)


def cell_shape(pools: Sequence[ImageData]) -> tuple[int, int]:
    """The (height, width) of a mosaic cell: the largest image among ``pools``."""
    shapes = [d.images.shape[2:] for d in pools if len(d)]
    if not shapes:
        return 8, 8
    return max(int(s[0]) for s in shapes), max(int(s[1]) for s in shapes)


# --------------------------------------------------------------------------- sample grid


def pick_examples(labels: np.ndarray, c: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` indices of images of class ``c``, drawn without replacement by ``rng``,
    in increasing order."""
    index = np.flatnonzero(labels == c)
    if len(index) > k:
        index = np.sort(rng.choice(index, size=k, replace=False))
    return index


def sample_grid(path: Path, sites: list[tuple[int, ImageData]], class_names: list[str],
                per_class: int = 6, seed: int = 0) -> None:
    """Example training images of every site, written as a PNG at ``path``.

    One block of rows per site (titled "site k"), one row per class (labelled with the
    class name), ``per_class`` images per row chosen at random with ``seed`` (the same
    inputs always pick the same images). A class the site has no images of shows one
    empty cell marked "none"; a class with fewer than ``per_class`` images leaves the
    rest of its row blank. One-channel images are shown in grey, RGB as colour.
    """
    if not sites:
        message_figure(path, "no sites")
        return
    per_class = max(1, int(per_class))
    top_label = max((int(d.labels.max()) for _, d in sites if len(d)), default=-1)
    num_classes = max(len(class_names), top_label + 1, 1)
    names = [class_name(class_names, c) for c in range(num_classes)]

    height, width = cell_shape([d for _, d in sites])
    cell = float(np.clip(36.0 / (len(sites) * num_classes), 0.35, 0.85))
    label_width = 0.4 + 0.075 * max(len(n) for n in names)
    fig = new_figure(per_class * cell + label_width + 0.3,
                     len(sites) * (num_classes * cell + 0.4) + 0.5)
    fig.suptitle("Example training images per site", fontsize=12)
    for ax, (site_id, data) in zip(fig.subplots(len(sites), 1, squeeze=False)[:, 0], sites,
                                   strict=True):
        ax.set_title(f"site {site_id}  ({len(data)} images)", fontsize=11,
                     fontweight="bold", loc="left")
        mosaic = Mosaic(num_classes, 1, per_class, height, width)
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(site_id) & 0xFFFFFFFF])
        for c in range(num_classes):
            chosen = pick_examples(data.labels, c, per_class, rng)
            for j, index in enumerate(chosen):
                mosaic.put(c, j, data.images[index])
            if not len(chosen):
                mosaic.mark_empty(c, 0)
        mosaic.draw(ax, row_labels=names)
    save_figure(fig, path)


# --------------------------------------------------------------------------- class balance


def class_balance(path: Path, sites: list[dict], class_names: list[str]) -> None:
    """Stacked bars of how many training images of each class every site holds.

    ``sites`` are the entries of ``metrics["sites"]``: ``{"site", "n", "class_counts"}``.
    The total of each site is written above its bar.
    """
    if not sites:
        message_figure(path, "no sites")
        return
    counts_per_site = [list(s.get("class_counts") or []) for s in sites]
    num_classes = max(len(class_names), max(len(c) for c in counts_per_site), 1)
    counts = np.zeros((len(sites), num_classes), dtype=np.int64)
    for i, row in enumerate(counts_per_site):
        counts[i, :len(row)] = row
    labels = [f"site {s.get('site', i)}" for i, s in enumerate(sites)]
    colors = class_colors(num_classes)

    fig = new_figure(max(4.0, 1.0 + 0.8 * len(sites)) + 1.6, 3.8)
    ax = fig.add_subplot()
    x = np.arange(len(sites))
    bottom = np.zeros(len(sites), dtype=np.int64)
    for c in range(num_classes):
        ax.bar(x, counts[:, c], bottom=bottom, width=0.7, color=colors[c],
               label=class_name(class_names, c), edgecolor="white", linewidth=0.5)
        bottom += counts[:, c]
    top = int(bottom.max()) if len(bottom) else 0
    for xi, total in zip(x, bottom, strict=True):
        ax.text(xi, total + 0.01 * max(top, 1), str(int(total)), ha="center", va="bottom",
                fontsize=9)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, max(top, 1) * 1.1)
    ax.set_ylabel("training images")
    ax.set_title("Class balance per site")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize=9)
    save_figure(fig, path)


# --------------------------------------------------------------------------- arms chart


VALUE_COLUMN_X = 1.015  # where the arms chart writes the values, right of the bars


def _bar_label(ax: Axes, value: Any, y: float) -> None:
    """The value of one bar, in a column right of the 0..1 range (clear of any dots)."""
    text = f"{value:.3f}" if is_number(value) else "n/a"
    ax.text(VALUE_COLUMN_X, y, text, va="center", ha="left", fontsize=8.5)


def arms_chart(path: Path, arms: list[dict]) -> None:
    """Horizontal bars of accuracy and balanced accuracy of every arm, top to bottom in
    recipe order.

    Arms that are not private (they pool raw images) are hatched and labelled
    "not private". Arms scored per site (local) also show each site's accuracy as a dot
    on their accuracy bar. A missing value is drawn as no bar and labelled "n/a".
    """
    if not arms:
        message_figure(path, "no arms")
        return
    fig = new_figure(7.0, 1.0 + 0.75 * len(arms) + 0.8)
    ax = fig.add_subplot()
    height = 0.36
    ticks, tick_labels, any_public, any_dots = [], [], False, False
    for i, arm in enumerate(arms):
        metrics = arm.get("metrics") or {}
        private = bool(arm.get("private", True))
        hatch = None if private else "//"
        any_public = any_public or not private
        y_acc, y_bal = i - height / 2, i + height / 2
        for y, key, color in ((y_acc, "accuracy", ACCURACY_COLOR),
                              (y_bal, "balanced_accuracy", BALANCED_COLOR)):
            value = metrics.get(key)
            if is_number(value):
                ax.barh(y, float(value), height=height, color=color, hatch=hatch,
                        edgecolor="white" if private else "black", linewidth=0.5)
            _bar_label(ax, value, y)
        site_acc = [s.get("accuracy") for s in arm.get("sites") or []]
        site_acc = [float(v) for v in site_acc if is_number(v)]
        if site_acc:
            any_dots = True
            ax.scatter(site_acc, [y_acc] * len(site_acc), s=22, color="black",
                       edgecolors="white", linewidths=0.6, zorder=3)
        name = str(arm.get("name", arm.get("use", f"arm {i}")))
        ticks.append(i)
        tick_labels.append(name if private else f"{name}\n(not private)")

    ax.set_yticks(ticks, tick_labels)
    for label, arm in zip(ax.get_yticklabels(), arms, strict=True):
        if not bool(arm.get("private", True)):
            label.set_color(NOT_PRIVATE_COLOR)
    ax.set_ylim(len(arms) - 0.5, -0.5)  # recipe order, top to bottom
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(0.0, 1.1)
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    ax.set_xlabel("score on the real held-out test set")
    ax.set_title("Utility per arm")
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)

    handles: list[Any] = [Patch(color=ACCURACY_COLOR, label="accuracy"),
                          Patch(color=BALANCED_COLOR, label="balanced accuracy")]
    if any_dots:
        handles.append(ax.scatter([], [], s=22, color="black", label="per-site accuracy"))
    if any_public:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                             label="not private (pools raw images)"))
    fig.legend(handles=handles, loc="outside lower center",
               ncols=len(handles) if len(handles) <= 3 else 2,
               frameon=False, fontsize=9)
    save_figure(fig, path)


# --------------------------------------------------------------------------- cost curve


def curve_bytes(point: dict) -> float | None:
    """Bytes exchanged so far at one curve point (both directions), or None."""
    up, down = point.get("bytes_to_server"), point.get("bytes_to_sites")
    if not is_number(up) and not is_number(down):
        return None
    return float(up if is_number(up) else 0) + float(down if is_number(down) else 0)


def cost_chart(path: Path, arms: list[dict]) -> None:
    """Test accuracy against cumulative bytes exchanged (log scale), one series per arm.

    An arm's points come from its ``curve`` (metrics.json): a multi-round arm (FedAvg)
    is a line through its rounds (and its released model, after a step at the sites),
    ending in a larger marker; a one-shot arm
    (centralized, local, synthetic) is a single marker. Arms that are not private are
    drawn hollow and labelled "not private". A point without accuracy or bytes is left
    out; an arm with none says so in the legend.
    """
    if not arms:
        message_figure(path, "no arms")
        return
    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot()
    colors = colormaps["tab10"].colors
    drawn = False
    for i, arm in enumerate(arms):
        name = str(arm.get("name", arm.get("use", f"arm {i}")))
        private = bool(arm.get("private", True))
        label = name if private else f"{name} (not private)"
        points = [(curve_bytes(p), p.get("accuracy")) for p in arm.get("curve") or []]
        points = [(max(b, 1.0), float(a)) for b, a in points
                  if b is not None and is_number(a)]
        if not points:
            ax.plot([], [], " ", label=f"{label}: no data")
            continue
        drawn = True
        color = colors[i % len(colors)]
        face = color if private else "white"
        xs, ys = zip(*points, strict=True)
        if len(points) > 1:
            ax.plot(xs, ys, "-", color=color, linewidth=1.4, marker="o", markersize=3)
        ax.plot(xs[-1:], ys[-1:], "o", markersize=9, markerfacecolor=face,
                markeredgecolor=color, markeredgewidth=1.8, label=label)
    if drawn:
        ax.set_xscale("log")
    ax.set_xlabel("bytes exchanged so far (to server + to sites, log scale)")
    ax.set_ylabel("accuracy on the real held-out test set")
    ax.set_title("What each arm reaches for what it costs")
    ax.grid(color="#DDDDDD", linewidth=0.6, which="major")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="best", frameon=False, fontsize=9)
    save_figure(fig, path)


# --------------------------------------------------------------------------- ROC curves

#: Smallest rate shown on the log-log ROC axes (lower rates are drawn at this value).
ROC_FLOOR = 1e-3


def roc_chart(path: Path, rocs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
              title: str) -> None:
    """Membership-inference ROC curves on log-log axes, one colour per attack: solid
    against the arm's released model, dashed against the control model (trained on none
    of the candidates), with the chance diagonal. Rates below ``ROC_FLOOR`` are drawn at
    the floor, where the low-FPR regime that matters starts."""
    if not rocs:
        message_figure(path, "no attacks")
        return
    fig = new_figure(5.6, 4.8)
    ax = fig.add_subplot()
    colors = colormaps["tab10"].colors
    grid = np.logspace(np.log10(ROC_FLOOR), 0, 50)
    ax.plot(grid, grid, ":", color=MUTED_COLOR, linewidth=1.0, label="chance")
    for i, (attack, curves) in enumerate(rocs.items()):
        color = colors[i % len(colors)]
        for which, style in (("target", "-"), ("control", "--")):
            if which not in curves:
                continue
            fpr, tpr = (np.maximum(np.asarray(v, dtype=float), ROC_FLOOR) for v in curves[which])
            label = attack if which == "target" else f"{attack} (control)"
            ax.step(fpr, tpr, style, where="post", color=color, linewidth=1.5, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(ROC_FLOOR, 1.0)
    ax.set_ylim(ROC_FLOOR, 1.0)
    ax.set_xlabel("false-positive rate (non-members called members)")
    ax.set_ylabel("true-positive rate (members found)")
    ax.set_title(title)
    ax.grid(color="#DDDDDD", linewidth=0.6, which="major")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower right", frameon=False, fontsize=8.5)
    save_figure(fig, path)


# --------------------------------------------------------------------------- synthetic grid


def synthetic_grid(path: Path, real: list[tuple[int, ImageData]],
                   synthetic: dict[int, ImageData], class_names: list[str], seed: int,
                   per_class: int = 4) -> None:
    """Real training images of every site next to the synthetic images made for it.

    One block per site (titled "site k"), holding a row "site k real" above a row
    "site k synthetic"; one group of ``per_class`` columns per class, headed by the class
    name. Each cell group shows up to ``per_class`` images of that class picked at random
    with ``seed`` (the same inputs always pick the same images). A class a site (or its
    synthetic pool) has no images of leaves its cells blank. Sites are those of ``real``
    in order, then any site only in ``synthetic`` in increasing order; a site with no
    images on one side shows "none" in the first cell of that row. One-channel images
    are shown in grey, RGB as colour. With no synthetic images at all the PNG says so.
    """
    if not synthetic:
        message_figure(path, "no synthetic images")
        return
    per_class = max(1, int(per_class))
    real_by_site = {int(site_id): data for site_id, data in real}
    site_ids = [int(site_id) for site_id, _ in real]
    site_ids += sorted(int(s) for s in synthetic if int(s) not in real_by_site)
    pools = list(real_by_site.values()) + list(synthetic.values())
    top_label = max((int(d.labels.max()) for d in pools if len(d)), default=-1)
    num_classes = max(len(class_names), top_label + 1, 1)
    names = [class_name(class_names, c) for c in range(num_classes)]

    height, width = cell_shape(pools)
    columns = num_classes * per_class
    cell = float(np.clip(min(24.0 / columns, 16.0 / (2 * len(site_ids))), 0.3, 0.8))
    label_width = 0.3 + 0.075 * max(len(f"site {s} synthetic") for s in site_ids)
    fig = new_figure(label_width + num_classes * (per_class * cell + 0.25) + 0.3,
                     len(site_ids) * (2 * cell + 0.95) + 0.5)
    fig.suptitle("Real and synthetic images per site and class", fontsize=12)
    for ax, site_id in zip(fig.subplots(len(site_ids), 1, squeeze=False)[:, 0], site_ids,
                           strict=True):
        pair = (("real", real_by_site.get(site_id)), ("synthetic", synthetic.get(site_id)))
        counts = ", ".join(f"{len(d) if d is not None else 0} {kind}" for kind, d in pair)
        ax.set_title(f"site {site_id}  ({counts})", fontsize=11, fontweight="bold",
                     loc="left")
        mosaic = Mosaic(2, num_classes, per_class, height, width)
        for row, (kind, data) in enumerate(pair):
            if data is None or len(data) == 0:
                mosaic.mark_empty(row, 0)
                continue
            stream = 0 if kind == "real" else 1
            for c in range(num_classes):
                rng = np.random.default_rng([int(seed) & 0xFFFFFFFF,
                                             int(site_id) & 0xFFFFFFFF, stream, c])
                for j, index in enumerate(pick_examples(data.labels, c, per_class, rng)):
                    mosaic.put(row, c * per_class + j, data.images[index])
        mosaic.draw(ax, row_labels=[f"site {site_id} {kind}" for kind, _ in pair],
                    group_labels=names)
    save_figure(fig, path)


# --------------------------------------------------------------------------- privacy


def privacy_family(arm: dict) -> str:
    """The line an arm belongs to on the utility-against-ε figure: its component and,
    under DP, its clipping (the arms of one family differ only in their budget)."""
    privacy = arm.get("privacy") or {}
    clipping = (privacy.get("about") or {}).get("clipping")
    return f"{arm.get('use', '?')}" + (f", {clipping} clipping" if clipping else "")


def privacy_chart(path: Path, arms: list[dict]) -> None:
    """Accuracy and AUC on the real test set against each arm's ε (log scale); arms
    without a guarantee (ε = ∞) sit at the right edge, marked ∞. The DP arms of one
    family (``privacy_family``: same component and clipping) are joined by a line that
    ends at the same component's arm without DP, so each family reads as a
    utility-privacy curve. Arms that pool raw images are left out."""
    rows = []
    for arm in arms:
        privacy = arm.get("privacy") or {}
        if not arm.get("private", True) or privacy.get("mechanism") == "not private":
            continue
        epsilon = privacy.get("epsilon")
        rows.append((str(arm.get("use", "?")), privacy_family(arm),
                     float(epsilon) if is_number(epsilon) else None,
                     arm.get("metrics") or {}))
    finite = sorted({eps for _, _, eps, _ in rows if eps is not None})
    if not finite:
        message_figure(path, "no arm trained under differential privacy")
        return
    infinity = finite[-1] * 4.0
    dp_uses = {use for use, _, eps, _ in rows if eps is not None}
    families: dict[str, list[tuple[float, dict]]] = {}
    for _use, family, eps, metrics in rows:
        if eps is not None:
            families.setdefault(family, []).append((eps, metrics))
    for use, family, eps, metrics in rows:  # no DP: the end of each DP line of its use
        if eps is None:
            joined = [f for f in families if f.split(",")[0] == use] if use in dp_uses else []
            for f in joined or [family]:
                families.setdefault(f, []).append((infinity, metrics))
    fig = new_figure(9.0, 4.0)
    colors = colormaps["tab10"].colors
    for k, (key, label) in enumerate((("accuracy", "accuracy"), ("auc", "AUC"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for i, (family, members) in enumerate(families.items()):
            points = sorted((eps, float(m[key])) for eps, m in members if is_number(m.get(key)))
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "-o", color=colors[i % len(colors)], linewidth=1.4,
                    markersize=5, label=family)
        ax.set_xscale("log")
        ticks = [*finite, infinity]
        ax.set_xticks(ticks, [f"{t:.3g}" for t in finite] + ["∞"])
        ax.minorticks_off()
        ax.set_xlabel("ε (log scale; ∞: no DP)")
        ax.set_ylabel(f"{label} on the real held-out test set")
        ax.grid(color="#DDDDDD", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        if k == 0:
            ax.legend(loc="best", frameon=False, fontsize=8)
    fig.suptitle("Utility against the privacy budget")
    save_figure(fig, path)
