"""Savings at equal accuracy: the cheapest measured point reaching a reference accuracy, never
interpolated, "not reached" when none does, and the rendered section of a table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adacal.reporting.equal_accuracy import (
    Point,
    Target,
    compare,
    equal_accuracy,
    saving,
    section_markdown,
    targets,
)
from adacal.reporting.metrics_file import write_metrics
from adacal.reporting.plots import equal_accuracy_marks
from adacal.reporting.render import render
from adacal.reporting.spec import SpecError, load_spec, parse_spec


def P(T: int, score: float, energy: float, steps: float | None = None) -> Point:
    return Point(T, float(T) if steps is None else steps, score, energy)


CURVE = [P(2, 80.0, 10.0), P(4, 85.0, 20.0), P(8, 90.0, 40.0), P(16, 92.0, 35.0)]


def test_the_cheapest_point_at_or_above_the_target():
    assert equal_accuracy(CURVE, 85.0) == CURVE[1]  # reaching it exactly counts
    assert equal_accuracy(CURVE, 84.99) == CURVE[1]
    assert equal_accuracy(CURVE, 50.0) == CURVE[0]
    # T = 16 scores more than T = 8 and costs less (IAT, compression): the cheaper one wins
    assert equal_accuracy(CURVE, 88.0) == CURVE[3]
    assert equal_accuracy(CURVE, 92.0) == CURVE[3]


def test_not_reached():
    assert equal_accuracy(CURVE, 92.01) is None
    assert equal_accuracy([], 0.0) is None


def test_never_interpolates():
    """A target between two points picks the measured point above it, even though a straight
    line between the two would reach the target at half the extra energy."""
    points = [P(4, 80.0, 10.0), P(8, 90.0, 30.0)]
    chosen = equal_accuracy(points, 85.0)
    assert chosen == points[1]
    line = 10.0 + (85.0 - 80.0) / (90.0 - 80.0) * (30.0 - 10.0)  # 20 µJ, never measured
    assert chosen.energy == 30.0 != line
    assert (chosen.T, chosen.score) == (8, 90.0)


def test_ties():
    same_energy = [P(4, 86.0, 20.0), P(8, 88.0, 20.0), P(16, 87.0, 20.0)]
    assert equal_accuracy(same_energy, 85.0).T == 8  # the higher score
    iat = [P(8, 88.0, 20.0, steps=5.5), P(16, 88.0, 20.0, steps=5.2)]
    assert equal_accuracy(iat, 85.0).T == 16  # then the fewer mean steps
    identical = [P(8, 88.0, 20.0, steps=4.0), P(4, 88.0, 20.0, steps=4.0)]
    assert equal_accuracy(identical, 85.0).T == 4  # then the smaller T
    assert equal_accuracy(list(reversed(identical)), 85.0).T == 4  # in any order


def test_targets_and_savings_against_the_baselines_own_selection():
    # a baseline whose score dips at its largest T: T = 8 scores as well as T = 16, for less
    base = [P(4, 70.0, 10.0), P(8, 86.0, 20.0), P(16, 85.0, 40.0)]
    found = targets(base, ann_score=87.5, label="IF")
    assert found == [
        Target("baseline", 85.0, "IF at T=16"),
        Target("ann", 86.5, "ANN − 1 pt (ANN 87.50; baseline IF)"),
    ]
    method = [P(2, 84.0, 4.0), P(4, 88.0, 12.0)]
    rows = [("burst", "burst", method), ("if", "IF", base)]
    first = compare(rows, "if", found[0], "spikes")
    assert [s.row_id for s in first.selections] == ["if", "burst"]  # the baseline first
    assert first.selections[0].point == base[1] and first.selections[0].saving == 0.0
    assert first.selections[0].is_baseline
    assert first.selections[1].point == method[1]
    assert first.selections[1].saving == pytest.approx(1 - 12.0 / 20.0)
    second = compare(rows, "if", found[1], "spikes")  # 86.5: the baseline never reaches it
    assert second.selections[0].point is None and second.selections[0].saving is None
    assert second.selections[1].point == method[1] and second.selections[1].saving is None
    assert saving(P(1, 1.0, 5.0), P(1, 1.0, 0.0)) is None
    assert targets([], None, "IF") == []


SPEC = {
    "title": "Equal accuracy",
    "state": "local",
    "metric": "acc",
    "timesteps": [2, 4, 8],
    "columns": ["score", "energy_uj", "saving", "energy_messages_uj", "saving_messages"],
    "baseline": "if",
    "burst": ["spikes", "messages"],
    "jobs": [{"experiment": "digits_small_cnn", "sweep": {"method": ["if", "burst"]}}],
    "rows": [
        {"id": "ann", "label": "ANN", "ann": True, "select": {"method": "if"}},
        {"id": "if", "label": "IF", "select": {"method": "if"}},
        {"id": "burst", "label": "burst", "select": {"method": "burst φ=4"}},
        {"id": "iat", "label": "AdaFire + IAT", "select": {"method": "adafire + iat"}},
    ],
}
# (method): T -> (acc, energy spikes µJ, energy messages µJ, mean timesteps)
RUNS = {
    "if": {2: (0.60, 10.0, 10.0, 2), 4: (0.80, 20.0, 20.0, 4), 8: (0.88, 40.0, 40.0, 8)},
    "burst": {2: (0.85, 30.0, 12.0, 2), 4: (0.90, 60.0, 24.0, 4), 8: (0.91, 120.0, 48.0, 8)},
    "adafire": {2: (0.70, 8.0, 6.0, 1.5), 4: (0.86, 14.0, 10.0, 2.5), 8: (0.89, 22.0, 16.0, 4.25)},
}
CONFIGS = {
    "if": {"neuron": {"name": "if"}},
    "burst": {"neuron": {"name": "burst", "phi": 4}},
    "adafire": {"neuron": {"name": "adafire"}, "inference": {"name": "iat"}},
}


@pytest.fixture()
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for num, (method, by_T) in enumerate(RUNS.items()):
        metrics = {"ann/test/acc": 0.905, "ann/energy_uj": 100.0}
        for T, (acc, e_spikes, e_messages, steps) in by_T.items():
            metrics |= {
                f"snn/test/acc_T{T}": acc,
                f"snn/test/energy_uj_T{T}": e_spikes,
                f"snn/test/energy_messages_uj_T{T}": e_messages,
                f"snn/test/mean_timesteps_T{T}": float(steps),
            }
        config = {"experiment_name": "digits_small_cnn", "seed": 0, **CONFIGS[method]}
        write_metrics(root / str(num), metrics, config)
    return root


EXPECTED_SECTION = """\
## Savings at equal accuracy

Per row, the cheapest measured point (its T; with IAT its mean timesteps) whose top-1 (%) \
reaches the reference, never interpolated between points; "not reached" when no point does. \
Saving = 1 − E/E_ref, E_ref the energy of the baseline's own cheapest point at the same \
accuracy. Scores and energies are means over seeds. Energy convention: spikes (a burst of k \
spikes costs k ACs per synapse); messages (a non-zero burst costs one AC per synapse).

### IF at T=8: top-1 (%) ≥ 88.00, spikes convention

| row | T | mean timesteps | top-1 (%) | energy/image (µJ) | saving vs baseline (%) |
| --- | ---: | ---: | ---: | ---: | ---: |
| IF | 8 | 8.00 | 88.00 | 40.00 | reference |
| burst | 4 | 4.00 | 90.00 | 60.00 | -50.0 |
| AdaFire + IAT | 8 | 4.25 | 89.00 | 22.00 | 45.0 |

### ANN − 1 pt (ANN 90.50; baseline IF): top-1 (%) ≥ 89.50, spikes convention

| row | T | mean timesteps | top-1 (%) | energy/image (µJ) | saving vs baseline (%) |
| --- | ---: | ---: | ---: | ---: | ---: |
| IF | not reached | - | - | - | - |
| burst | 4 | 4.00 | 90.00 | 60.00 | - |
| AdaFire + IAT | not reached | - | - | - | - |

IF reaches this accuracy at no measured T: no saving is defined.

### IF at T=8: top-1 (%) ≥ 88.00, messages convention

| row | T | mean timesteps | top-1 (%) | energy/image (µJ) | saving vs baseline (%) |
| --- | ---: | ---: | ---: | ---: | ---: |
| IF | 8 | 8.00 | 88.00 | 40.00 | reference |
| burst | 4 | 4.00 | 90.00 | 24.00 | 40.0 |
| AdaFire + IAT | 8 | 4.25 | 89.00 | 16.00 | 60.0 |

### ANN − 1 pt (ANN 90.50; baseline IF): top-1 (%) ≥ 89.50, messages convention

| row | T | mean timesteps | top-1 (%) | energy/image (µJ) | saving vs baseline (%) |
| --- | ---: | ---: | ---: | ---: | ---: |
| IF | not reached | - | - | - | - |
| burst | 4 | 4.00 | 90.00 | 24.00 | - |
| AdaFire + IAT | not reached | - | - | - | - |

IF reaches this accuracy at no measured T: no saving is defined.
"""


def test_rendered_section_of_a_tiny_spec(sweep):
    out = render(parse_spec(SPEC, "tiny"), [sweep], None)
    md = out.markdown
    assert EXPECTED_SECTION in md
    assert md.index("| row | T | top-1 (%)") < md.index("## Savings at equal accuracy")
    assert md.index("## Savings at equal accuracy") < md.index("Runs: 3 found")
    # the messages columns of the main table: each convention's saving against its baseline
    burst4 = next(ln for ln in out.lines if ln.row.id == "burst" and ln.T == 4)
    assert burst4.cells["saving"].mean == pytest.approx(100 * (1 - 60.0 / 20.0))
    assert burst4.cells["saving_messages"].mean == pytest.approx(100 * (1 - 24.0 / 20.0))
    assert burst4.cells["energy_messages_uj"].mean == pytest.approx(24.0)
    ann = next(ln for ln in out.lines if ln.row.ann)
    assert ann.cells["energy_messages_uj"].mean == ann.cells["energy_uj"].mean == 100.0
    assert "energy/image, messages (µJ)" in md and "saving vs baseline, messages (%)" in md
    # the Pareto plot rings the spikes selections, each point once
    assert equal_accuracy_marks(out.comparisons) == {
        "baseline": [(40.0, 88.0), (60.0, 90.0), (22.0, 89.0)],
        "ann": [(60.0, 90.0)],
    }
    assert equal_accuracy_marks(out.comparisons, "messages")["ann"] == [(24.0, 90.0)]


def test_spikes_only_by_default_and_no_section_without_a_baseline(sweep, tmp_path):
    spec = parse_spec({k: v for k, v in SPEC.items() if k != "burst"}, "tiny")
    assert spec.bursts == ("spikes",)
    md = render(spec, [sweep], tmp_path / "out").markdown
    assert "spikes convention" in md and "messages convention" not in md
    assert (tmp_path / "out" / "tiny_pareto.png").is_file()
    plain = parse_spec({**SPEC, "baseline": None, "columns": ["score", "energy_uj"]}, "plain")
    assert "Savings at equal accuracy" not in render(plain, [sweep], None).markdown


def test_section_is_empty_without_comparisons():
    assert section_markdown([], "top-1 (%)") == ""


@pytest.mark.parametrize("value", ["bits", ["spikes", "spikes"], []])
def test_bad_burst_in_a_spec_names_the_key(tmp_path, value):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "burst": value}, allow_unicode=True))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.key == "burst"
