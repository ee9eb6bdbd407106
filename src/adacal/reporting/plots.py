"""PNG plots beside a rendered table: score vs T, energy vs score (Pareto), φ and firing
rate per layer. Matplotlib with the Agg backend (no display needed).

- ``<name>_score_vs_T.png``: each SNN row's mean score (± std over seeds) against T on a
  log2 axis; ANN rows as dashed horizontal lines; published references as open markers.
- ``<name>_pareto.png``: every (row, T) as a point (energy per image, score); the Pareto
  front (no other point has lower energy and a higher score) is drawn as a step line, and
  the points chosen by the savings at equal accuracy (``spikes`` convention,
  :mod:`adacal.reporting.equal_accuracy`) are ringed: a circle for the baseline's accuracy
  at its largest T, a square for ANN − 1 pt.
- ``<name>_layers.png``: at the largest T with per-site data, the firing pattern φ_l of
  each site (AdaFire's searched φ, ``snn/adafire/site{l}_phi_T{T}``; the fixed φ of burst;
  1 for IF) and the firing rate r_l (spikes per neuron per step) per site.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from adacal import keys  # noqa: E402
from adacal.reporting.equal_accuracy import Comparison  # noqa: E402
from adacal.reporting.records import Entry, matches  # noqa: E402
from adacal.reporting.rendered import Line, Rendered  # noqa: E402


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points (energy, score) that no other point beats on both (lower energy, higher
    score), sorted by energy; ties in energy keep the best score."""
    front: list[tuple[float, float]] = []
    for e, s in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or s > front[-1][1]:
            front.append((e, s))
    return front


def _snn_lines(rendered: Rendered) -> dict[str, list[Line]]:
    by_row: dict[str, list[Line]] = {}
    for line in rendered.lines:
        if line.T is not None:
            by_row.setdefault(line.row.id, []).append(line)
    return by_row


def plot_score_vs_T(rendered: Rendered, path: Path) -> Path:
    """Score against T per row (see the module docstring)."""
    spec = rendered.spec
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    snn_lines = _snn_lines(rendered)
    _colors(ax, len(snn_lines))
    for line in rendered.lines:
        cell = line.cells["score"]
        if line.T is None and cell.mean is not None:
            ax.axhline(cell.mean, ls="--", color="0.4", lw=1, label=line.row.label)
    for lines in snn_lines.values():
        pts = [(ln.T, ln.cells["score"]) for ln in lines if ln.cells["score"].mean is not None]
        if not pts:
            continue
        xs = [t for t, _ in pts]
        err = [c.std or 0.0 for _, c in pts]
        bar = ax.errorbar(
            xs, [c.mean for _, c in pts], yerr=err, marker="o", capsize=3, label=lines[0].row.label
        )
        refs = [(ln.T, r.value) for ln in lines for r in ln.references["score"]]
        if refs:
            ax.plot(
                *zip(*refs, strict=True),
                ls="none",
                marker="D",
                mfc="none",
                color=bar[0].get_color(),
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(spec.timesteps), [str(t) for t in spec.timesteps])
    return _finish(fig, ax, spec, "timesteps T", path)


def plot_pareto(rendered: Rendered, path: Path) -> Path | None:
    """Energy per image against score, with the Pareto front; None without energies."""
    spec = rendered.spec
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    snn_lines = _snn_lines(rendered)
    _colors(ax, len(snn_lines))
    points = []
    for lines in snn_lines.values():
        pts = [
            (ln.cells["energy_uj"].mean, ln.cells["score"].mean, ln.T)
            for ln in lines
            if "energy_uj" in ln.cells
            and ln.cells["energy_uj"].mean
            and ln.cells["score"].mean is not None
        ]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lines[0].row.label)
        for e, s, T in pts:
            ax.annotate(f"T={T}", (e, s), fontsize=6, xytext=(3, 3), textcoords="offset points")
        points += [(e, s) for e, s, _ in pts]
    if not points:
        plt.close(fig)
        return None
    front = pareto_front(points)
    ax.step(
        [p[0] for p in front],
        [p[1] for p in front],
        where="post",
        ls=":",
        color="k",
        lw=1,
        label="Pareto front",
    )
    for line in rendered.lines:
        ann = line.cells.get("energy_uj")
        if line.T is None and ann is not None and ann.mean and line.cells["score"].mean is not None:
            ax.plot(
                [ann.mean],
                [line.cells["score"].mean],
                marker="*",
                ms=10,
                ls="none",
                color="k",
                label=line.row.label,
            )
    mark_equal_accuracy(ax, rendered.comparisons)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return _finish(fig, ax, spec, "energy per image (µJ, log)", path)


EQUAL_ACCURACY_MARKERS = {  # target kind: (marker, legend label)
    "baseline": ("o", "cheapest ≥ baseline at its largest T"),
    "ann": ("s", "cheapest ≥ ANN − 1 pt"),
}


def equal_accuracy_marks(
    comparisons: list[Comparison], burst: str = keys.SPIKES
) -> dict[str, list[tuple[float, float]]]:
    """The chosen points (energy, score) of the ``burst`` comparisons per target kind, each
    point once: what :func:`plot_pareto` rings."""
    marks: dict[str, list[tuple[float, float]]] = {}
    for comparison in comparisons:
        if comparison.burst != burst:
            continue
        for s in comparison.selections:
            if s.point is not None:
                found = marks.setdefault(comparison.target.kind, [])
                xy = (s.point.energy, s.point.score)
                if xy not in found:
                    found.append(xy)
    return marks


def mark_equal_accuracy(ax: Any, comparisons: list[Comparison]) -> None:
    """Ring the points chosen at equal accuracy (:func:`equal_accuracy_marks`) on ``ax``."""
    for kind, points in equal_accuracy_marks(comparisons).items():
        marker, label = EQUAL_ACCURACY_MARKERS.get(kind, ("D", kind))
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            ls="none",
            marker=marker,
            ms=11 if marker == "o" else 14,
            mfc="none",
            mec="k",
            mew=1.0,
            label=label,
        )


def site_profile(entry: Entry, T: int) -> tuple[list[float], list[float]] | None:
    """(φ per site, firing rate per site) of one run's entry at T, or None without per-site
    rates. φ: AdaFire's choice (``snn/adafire/site{i}_phi_T{T}``, one per site), else the
    burst φ, else 1 (IF)."""
    rates = keys.site_values(entry.metrics, keys.TEST, "rate", T)
    if not rates:
        return None
    rate = [float(v) for v in rates.values()]
    neuron: dict[str, Any] = entry.run.config.get("neuron", {})
    phi: list[float] = [float(neuron.get("phi", 1) or 1)] * len(rate)
    chosen = keys.site_values(entry.metrics, keys.ADAFIRE, keys.PHI, T)
    if chosen and len(chosen) == len(rate):
        phi = [float(p) for p in chosen.values()]
    return phi, rate


def plot_layers(rendered: Rendered, path: Path) -> Path | None:
    """φ and firing rate per site for each SNN row at its largest T with per-site data."""
    profiles = []
    for row in rendered.spec.rows:
        if row.ann:
            continue
        entries = [e for e in rendered.entries if matches(e, row.select, row.exclude)]
        for T in sorted(rendered.spec.timesteps, reverse=True):
            found = next((p for e in entries if (p := site_profile(e, T))), None)
            if found:
                profiles.append((row.label, T, *found))
                break
    if not profiles:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 5.6), sharex=True)
    for label, T, phi, rate in profiles:
        sites = list(range(len(rate)))
        top.step(sites, phi, where="mid", label=f"{label} (T={T})")
        bottom.plot(sites, rate, marker=".", label=f"{label} (T={T})")
    top.set_ylabel("firing pattern φ")
    bottom.set_ylabel("firing rate (spikes/neuron/step)")
    bottom.set_xlabel("neuron site (network order)")
    bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    top.set_title(_wrap(rendered.spec.title), fontsize=9)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)
    return _save(fig, path)


def _finish(fig: Any, ax: Any, spec: Any, xlabel: str, path: Path) -> Path:
    """Label a score plot (x label, the spec's score on y, wrapped title), grid, legend, save."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(spec.header("score"))
    ax.set_title(_wrap(spec.title), fontsize=9)
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[1]) > LEGEND_INSIDE:  # beside the axes, not over them
        fig.set_size_inches(10.5, 4.8)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


LEGEND_INSIDE = 10  # legend entries that still fit inside a score plot


def _colors(ax: Any, lines: int) -> None:
    """Twenty colours instead of ten when a plot has more than ten lines (frontier tables)."""
    if lines > 10:
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)


def _wrap(title: str) -> str:
    return textwrap.fill(title, 80)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_plots(rendered: Rendered, out_dir: Path) -> dict[str, Path]:
    """Write the plots that have data; returns {kind: path}."""
    name = rendered.spec.name
    out = {"score_vs_T": plot_score_vs_T(rendered, out_dir / f"{name}_score_vs_T.png")}
    for kind, fn in (("pareto", plot_pareto), ("layers", plot_layers)):
        path = fn(rendered, out_dir / f"{name}_{kind}.png")
        if path is not None:
            out[kind] = path
    return out
