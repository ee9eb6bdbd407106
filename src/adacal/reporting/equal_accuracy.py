"""Savings at equal accuracy: each method's cheapest *measured* point that reaches a reference
accuracy, and its energy saving against the baseline's cheapest point at the same accuracy.

A *point* is one measured (row, T) of a rendered table: the row's score at T (mean over seeds,
display units: percent), its energy per image (µJ, mean over seeds, in one energy convention)
and its steps (T; the mean exit step with IAT). For a target score a* the selection of a row
with points P is

    sel(P, a*) = argmin_{p ∈ P, score(p) ≥ a*} energy(p)     (ties: higher score, then fewer
                                                               steps, then smaller T)

over the measured points only: never interpolated (a straight line between two points may pass
a* more cheaply, but no run measured it), and ``None`` ("not reached") when no point scores a*.
The saving of a row is

    saving = 1 − E(sel(P_row, a*)) / E(sel(P_baseline, a*))

against the baseline row's own selection for the same a* (for the first reference below that is
at most the baseline's energy at its largest T: a cheaper T of the baseline that scores as well
is the fairer reference). Two targets per baseline row (:func:`targets`):

- ``baseline``: the baseline's score at its largest measured T;
- ``ann``: the ANN's score − 1 point (percentage point of the score's display unit).

Pure functions over numbers; :mod:`adacal.reporting.render` turns a table's lines into points
and :mod:`adacal.reporting.plots` marks the selections on the Pareto plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adacal import keys

NOT_REACHED = "not reached"
MISSING = "-"
REFERENCE = "reference"  # the saving cell of the baseline's own selection
ANN_MARGIN = 1.0  # the ``ann`` target: ANN score − 1 point (display units)
TITLE = "Savings at equal accuracy"
BURST_TEXT = {
    keys.SPIKES: "spikes (a burst of k spikes costs k ACs per synapse)",
    keys.MESSAGES: "messages (a non-zero burst costs one AC per synapse)",
}


@dataclass(frozen=True)
class Point:
    """One measured (row, T): ``T``, ``steps`` (T, or the mean exit step with IAT), ``score``
    (display units), ``energy`` per image (µJ); ``incomplete`` when a value comes from a run
    that did not finish."""

    T: int
    steps: float
    score: float
    energy: float
    incomplete: bool = False


@dataclass(frozen=True)
class Target:
    """A reference accuracy: ``kind`` ``"baseline"`` (the baseline at its largest T) or
    ``"ann"`` (ANN − 1 point), the ``score`` to reach (display units) and a ``label``."""

    kind: str
    score: float
    label: str


@dataclass(frozen=True)
class Selection:
    """One row's answer to one target: its ``point`` (None: not reached) and ``saving``
    1 − E/E_ref (a fraction; None without a point or a reference energy)."""

    row_id: str
    label: str
    point: Point | None
    saving: float | None
    is_baseline: bool = False


@dataclass(frozen=True)
class Comparison:
    """The selections of a baseline row's group of rows for one target and one energy
    convention ``burst``; the baseline's selection comes first."""

    baseline: str  # the baseline row's id
    target: Target
    burst: str
    selections: tuple[Selection, ...]


def equal_accuracy(points: Sequence[Point], target: float) -> Point | None:
    """The cheapest point with ``score ≥ target`` (ties: higher score, fewer steps, smaller
    T); None when no point reaches ``target``. Only measured points: never interpolated."""
    reached = [p for p in points if p.score >= target]
    return min(reached, key=lambda p: (p.energy, -p.score, p.steps, p.T), default=None)


def saving(point: Point | None, reference: Point | None) -> float | None:
    """1 − E/E_ref of a selection against the baseline's selection; None when either is
    missing or the reference energy is not positive."""
    if point is None or reference is None or not reference.energy > 0:
        return None
    return 1.0 - point.energy / reference.energy


def targets(baseline: Sequence[Point], ann_score: float | None, label: str) -> list[Target]:
    """The reference accuracies of the baseline row ``label`` with ``baseline`` points: its
    score at its largest measured T, and ``ann_score`` − 1 point (when the ANN's score is
    known)."""
    out = []
    if baseline:
        last = max(baseline, key=lambda p: p.T)
        out.append(Target("baseline", last.score, f"{label} at T={last.T}"))
    if ann_score is not None:
        text = f"ANN − {ANN_MARGIN:g} pt (ANN {ann_score:.2f}; baseline {label})"
        out.append(Target("ann", ann_score - ANN_MARGIN, text))
    return out


def compare(
    rows: Sequence[tuple[str, str, Sequence[Point]]], baseline: str, target: Target, burst: str
) -> Comparison:
    """Selections of ``rows`` ((row id, label, points), the baseline's id ``baseline`` among
    them) for ``target``; each saving against the baseline's own selection."""
    points = {row_id: pts for row_id, _, pts in rows}
    reference = equal_accuracy(points.get(baseline, ()), target.score)
    ordered = sorted(rows, key=lambda r: r[0] != baseline)  # the baseline first, stable
    selections = []
    for row_id, label, pts in ordered:
        chosen = equal_accuracy(pts, target.score)
        selections.append(
            Selection(row_id, label, chosen, saving(chosen, reference), row_id == baseline)
        )
    return Comparison(baseline, target, burst, tuple(selections))


def _cells(selection: Selection, mark: str) -> list[str]:
    """The cells of one selection: row, T, mean timesteps, score, energy, saving."""
    p = selection.point
    if p is None:
        return [selection.label, NOT_REACHED, MISSING, MISSING, MISSING, MISSING]
    flag = mark if p.incomplete else ""
    if selection.is_baseline:
        cut = REFERENCE
    else:
        cut = MISSING if selection.saving is None else f"{100.0 * selection.saving:.1f}"
    return [
        selection.label,
        str(p.T),
        f"{p.steps:.2f}",
        f"{p.score:.2f}{flag}",
        f"{p.energy:.2f}{flag}",
        cut,
    ]


def comparison_markdown(comparison: Comparison, score_header: str, mark: str = "†") -> str:
    """One comparison as a heading and a Markdown table (no trailing newline)."""
    target = comparison.target
    heading = (
        f"### {target.label}: {score_header} ≥ {target.score:.2f}, {comparison.burst} convention"
    )
    headers = ["row", "T", "mean timesteps", score_header, "energy/image (µJ)"]
    headers.append("saving vs baseline (%)")
    lines = [heading, "", "| " + " | ".join(headers) + " |"]
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |")
    lines += ["| " + " | ".join(_cells(s, mark)) + " |" for s in comparison.selections]
    base = next((s for s in comparison.selections if s.is_baseline), None)
    if base is not None and base.point is None:
        lines += ["", f"{base.label} reaches this accuracy at no measured T: no saving is defined."]
    return "\n".join(lines)


def section_markdown(
    comparisons: Sequence[Comparison],
    score_header: str,
    notes: Sequence[str] = (),
    mark: str = "†",
) -> str:
    """The "Savings at equal accuracy" section: how it is computed, one table per comparison
    and ``notes`` (baselines or targets that could not be compared). Empty when there is
    nothing to show."""
    if not comparisons and not notes:
        return ""
    bursts = list(dict.fromkeys(c.burst for c in comparisons))
    parts = [
        f"## {TITLE}",
        "",
        "Per row, the cheapest measured point (its T; with IAT its mean timesteps) whose "
        f"{score_header} reaches the reference, never interpolated between points; "
        f'"{NOT_REACHED}" when no point does. Saving = 1 − E/E_ref, E_ref the energy of the '
        "baseline's own cheapest point at the same accuracy. Scores and energies are means "
        "over seeds. Energy convention: " + "; ".join(BURST_TEXT[b] for b in bursts) + ".",
    ]
    for comparison in comparisons:
        parts += ["", comparison_markdown(comparison, score_header, mark)]
    if any(s.point is not None and s.point.incomplete for c in comparisons for s in c.selections):
        parts += ["", f"{mark} uses a value from a run that did not finish (listed below)."]
    if notes:
        parts += ["", *(f"- {n}" for n in notes)]
    return "\n".join(parts) + "\n"


__all__ = [
    "ANN_MARGIN",
    "Comparison",
    "NOT_REACHED",
    "Point",
    "Selection",
    "Target",
    "compare",
    "comparison_markdown",
    "equal_accuracy",
    "saving",
    "section_markdown",
    "targets",
]
