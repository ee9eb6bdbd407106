"""Iterated searches (``neuron.rounds``, ``compression.rounds``): AdaFire's φ search and SSC
re-measure their one-site tables around the previous round's choice and solve again under the
first round's budget; one round is today's single search, number for number."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import adacal.adaptive.search as search_module
from adacal.adaptive.compression import SpikeCompression
from adacal.adaptive.frontier import Choice, budget_limit, solve_min_cost, solve_min_sum
from adacal.adaptive.runner import Measurements, measure_variants, symmetric_kl
from adacal.adaptive.search import (
    CYCLE,
    EXHAUSTED,
    INFEASIBLE,
    STABLE,
    Round,
    best_round,
    iterate_rounds,
    search_for,
)
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate, fit_thresholds, site_threshold
from adacal.errors import ConfigError
from adacal.pipeline import build
from adacal.snn.convert import convert
from adacal.snn.neurons import AdaFireNeuron, IFNeuron
from adacal.snn.simulate import simulate

T = 1  # at T = 1 the one-site model is coarse, so the φ choice moves between rounds
IMAGES = 32
SPEC = ThresholdSpec()
# the fields a single search recorded before rounds existed, and the ones rounds add
ADAFIRE_FIELDS = {
    "phi", "candidates", "sensitivity", "spikes", "budget", "chosen_sensitivity", "cost",
    "chosen_spikes", "base_sensitivity", "site_steps", "images", "threshold_fit_s", "seconds",
}  # fmt: skip
SSC_FIELDS = {
    "ratio", "candidates", "sensitivity", "spikes", "budget", "chosen_sensitivity", "cost",
    "chosen_spikes", "base_sensitivity", "base_spikes", "site_steps", "images", "seconds",
}  # fmt: skip
ROUND_FIELDS = {"rounds", "returned_round", "stop", "evaluation_site_steps"}


@dataclass
class Run:
    """A calibrated network, its search record, and every measurement the search asked for:
    ``tables`` (one-site tables, in order) and ``scores`` (whole-network runs, no variants)."""

    net: object
    data: CalibrationData
    record: dict
    tables: list[Measurements]
    scores: list[Measurements]
    before: list[torch.Tensor]  # θ per site when the search started


def _fresh(digits, digits_ann, neuron):
    calib = digits["x_train"][: 2 * IMAGES]
    net = convert(digits_ann, neuron, calib[:1])
    data = CalibrationData.from_network(net, calib, T, progress=False)
    return net, data


def _run(digits, digits_ann, neuron, compression=None) -> Run:
    """``calibrate`` with no calibration steps, counting the search's measurements."""
    net, data = _fresh(digits, digits_ann, neuron)
    tables: list[Measurements] = []
    scores: list[Measurements] = []
    before: list[torch.Tensor] = []

    def counted(net, images, T, variants, **kw):
        m = measure_variants(net, images, T, variants, **kw)
        whole = all(v is None for row in variants for v in row)
        (scores if whole else tables).append(m)
        return m

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search_module, "measure_variants", counted)
        mp.setattr("adacal.adaptive.compression.measure_variants", counted)
        record = calibrate(
            net,
            data,
            SPEC,
            [],
            search=search_for(neuron),
            compression=compression,
            before_compression=lambda n: before.extend(s.theta.clone() for s in n.sites),
        )
    if compression is None:
        before = []
    name = "ssc" if compression is not None else "adafire"
    return Run(net, data, record[name], tables, scores, before)


def _refit(data, net):
    return lambda k, phi: site_threshold(data.ann[k], SPEC, T, phi).to(net.sites[k].theta.dtype)


def _end_to_end_kl(run: Run) -> float:
    """The calibrated network's KL to the ANN on the search images, simulated independently."""
    images = run.data.images[:IMAGES]
    run.net.set_mode("relu")
    with torch.no_grad():
        ann = run.net(images)
    snn = simulate(run.net, images, T).mean(0)
    return symmetric_kl(snn, ann).mean().item()


@pytest.fixture(scope="module")
def adafire(digits, digits_ann):
    """AdaFire with 1 and 5 rounds (ρ = 0.7, so φ_init everywhere is over budget)."""
    return {
        n: _run(digits, digits_ann, AdaFireNeuron(rho=0.7, batch_size=IMAGES, rounds=n))
        for n in (1, 5)
    }


@pytest.fixture(scope="module")
def ssc(digits, digits_ann):
    """SSC on the IF network with 1 and 4 rounds."""
    return {
        n: _run(
            digits,
            digits_ann,
            IFNeuron(),
            SpikeCompression(
                ratios=[1.0, 1.5, 2.0, 3.0, 4.0], rho=1.2, batch_size=IMAGES, rounds=n
            ),
        )
        for n in (1, 4)
    }


# --- one round is today's search --------------------------------------------------------------


def test_one_adafire_round_is_the_single_search(adafire, digits, digits_ann):
    """rounds = 1: the tables, budget, choice and totals of the single search computed here
    independently (all sites at φ_init, one site changed, threshold refitted), same fields."""
    run = adafire[1]
    rec = run.record
    assert set(rec) == ADAFIRE_FIELDS | ROUND_FIELDS
    net, data = _fresh(digits, digits_ann, AdaFireNeuron())
    net.set_T(T)
    fit_thresholds(net, data, SPEC)
    refit = _refit(data, net)
    candidates = list(range(1, 9))
    th = [{phi: refit(k, phi) for phi in candidates} for k in range(len(net.sites))]
    for site, t in zip(net.sites, th, strict=True):
        site.phi, site.theta = 8, t[8]
    variants = [[None if p == 8 else {"phi": p, "theta": t[p]} for p in candidates] for t in th]
    m = measure_variants(net, data.images[:IMAGES], T, variants, sub_batch=32)
    budget = 0.7 * sum(row[candidates.index(4)] for row in m.spikes)
    choice = solve_min_sum(m.sensitivity, m.spikes, budget)
    expected = {
        "phi": [candidates[j] for j in choice.indices],
        "candidates": candidates,
        "sensitivity": m.sensitivity,
        "spikes": m.spikes,
        "budget": budget,
        "chosen_sensitivity": choice.value,
        "chosen_spikes": choice.cost,
        "base_sensitivity": m.base_sensitivity,
        "site_steps": m.site_steps,
        "images": IMAGES,
        "cost": "spikes",
    }
    assert {k: rec[k] for k in expected} == expected
    assert [s.phi for s in run.net.sites] == expected["phi"]
    assert len(run.tables) == 1 and len(rec["rounds"]) == 1 and rec["returned_round"] == 1
    # the one extra whole-network run scores the choice (and is counted apart)
    assert len(run.scores) == 1 and rec["evaluation_site_steps"] == run.scores[0].site_steps
    assert rec["rounds"][0]["kl"] == pytest.approx(_end_to_end_kl(run), rel=1e-6)
    json.dumps(rec)  # goes to adaptive_T{T}.json as it is


def test_one_ssc_round_is_the_single_search(ssc):
    """rounds = 1: SSC's tables (r = 1 everywhere, one site's θ scaled), budget ρ·L·S(1),
    choice and totals computed here independently, same fields; θ_l = r_l·θ_l."""
    run = ssc[1]
    rec = run.record
    assert set(rec) == SSC_FIELDS | ROUND_FIELDS | {"kl_target"}
    ratios = [1.0, 1.5, 2.0, 3.0, 4.0]
    net = copy.deepcopy(run.net)
    for site, theta in zip(net.sites, run.before, strict=True):
        site.theta = theta
    variants = [[None if r == 1.0 else {"theta": t * r} for r in ratios] for t in run.before]
    m = measure_variants(net, run.data.images[:IMAGES], T, variants, sub_batch=32)
    L = len(run.before)
    budget = 1.2 * L * m.base_sensitivity
    choice = solve_min_cost(m.sensitivity, m.spikes, budget)
    expected = {
        "ratio": [ratios[j] for j in choice.indices],
        "candidates": ratios,
        "sensitivity": m.sensitivity,
        "spikes": m.spikes,
        "budget": budget,
        "chosen_sensitivity": choice.value,
        "chosen_spikes": choice.cost,
        "base_sensitivity": m.base_sensitivity,
        "base_spikes": sum(m.base_spikes),
        "site_steps": m.site_steps,
        "images": IMAGES,
        "cost": "spikes",
    }
    assert {k: rec[k] for k in expected} == expected
    for site, theta, r in zip(run.net.sites, run.before, expected["ratio"], strict=True):
        assert torch.equal(site.theta, theta * r)
    assert len(run.tables) == 1 and len(run.scores) == 1 and rec["returned_round"] == 1


# --- the rounds ---------------------------------------------------------------------------------


def _consistent_rounds(run: Run, field: str, max_rounds: int, start: tuple) -> None:
    """The measurements the search made agree with its record of the rounds and its stop
    (``start``: round 1's reference)."""
    rec, rounds = run.record, run.record["rounds"]
    n = len(rounds)
    assert 1 <= n <= max_rounds and [e["round"] for e in rounds] == list(range(1, n + 1))
    # one set of tables per round, one more when the last found no choice; a last choice that
    # was never a reference is scored by one whole-network run
    assert len(run.tables) == n + (rec["stop"] == INFEASIBLE)
    assert len(run.scores) == (rec["stop"] == EXHAUSTED)
    assert rec["site_steps"] == sum(m.site_steps for m in run.tables)
    # every choice but the last was new (never a reference), so the search went on
    choices = [tuple(e[field]) for e in rounds]
    references = [start, *choices[:-1]]
    assert len(set(references)) == n
    assert [e["changed"] for e in rounds] == [
        c != r for c, r in zip(choices, references, strict=True)
    ]
    if rec["stop"] == STABLE:  # stopped at the first repeat of the previous choice
        assert choices[-1] == references[-1]
    elif rec["stop"] == CYCLE:  # ... or of an earlier reference
        assert choices[-1] in references[:-1]
    elif rec["stop"] == EXHAUSTED:
        assert n == max_rounds and choices[-1] not in references
    # a round's choice is scored by the base run of the tables measured around it
    for i in range(n - 1):
        assert rounds[i]["kl"] == run.tables[i + 1].base_sensitivity
        assert rounds[i]["spikes"] == sum(run.tables[i + 1].base_spikes)


def test_adafire_rounds_match_their_measurements(adafire):
    run = adafire[5]
    _consistent_rounds(run, "phi", 5, (8,) * len(run.net.sites))
    assert len(run.record["rounds"]) >= 2  # ρ < 1: φ_init everywhere is not a choice


def test_ssc_rounds_match_their_measurements(ssc):
    _consistent_rounds(ssc[4], "ratio", 4, (1.0,) * len(ssc[4].before))


def test_every_round_respects_the_first_rounds_budget(adafire, ssc):
    """The budget is computed once (round 1's tables) and every round's choice meets it on
    that round's own tables: AdaFire Σ_l E_l(φ_l) ≤ ρ·Σ_l E_l(φ_target), SSC Σ_l S_l(r_l) ≤
    ρ·L·S(1)."""
    for run, field, rows, budget in (
        (adafire[5], "phi", "spikes", 0.7 * sum(r[3] for r in adafire[5].tables[0].spikes)),
        (
            ssc[4],
            "ratio",
            "sensitivity",
            1.2 * len(ssc[4].before) * ssc[4].tables[0].base_sensitivity,
        ),
    ):
        rec = run.record
        assert rec["budget"] == budget
        for entry, m in zip(rec["rounds"], run.tables, strict=False):
            assert entry["budget"] == budget
            idx = [rec["candidates"].index(v) for v in entry[field]]
            total = sum(row[j] for row, j in zip(getattr(m, rows), idx, strict=True))
            assert total <= budget_limit(budget)


def test_adafire_returns_its_best_round_and_applies_it(adafire):
    """The kept round has the lowest end-to-end KL among rounds whose total spikes are within
    the budget (round 1 otherwise), so never a higher KL than a within-budget round 1; the
    sites hold its φ with θ fitted for φ, and its KL is the network's."""
    run = adafire[5]
    rec, rounds = run.record, run.record["rounds"]
    for e in rounds:
        assert e["within_budget"] == (e["spikes"] <= budget_limit(rec["budget"]))
    ok = [i for i, e in enumerate(rounds) if e["within_budget"]]
    best = min(ok, key=lambda i: (rounds[i]["kl"], i)) if ok else 0
    assert rec["returned_round"] == best + 1
    kept = rounds[best]
    if rounds[0]["within_budget"]:
        assert kept["kl"] <= rounds[0]["kl"]
    assert rec["phi"] == kept["phi"] == [s.phi for s in run.net.sites]
    refit = _refit(run.data, run.net)
    for k, (site, phi) in enumerate(zip(run.net.sites, kept["phi"], strict=True)):
        assert torch.equal(site.theta, refit(k, phi))
    assert _end_to_end_kl(run) == pytest.approx(kept["kl"], rel=1e-6)
    # the record's tables and totals are the kept round's
    m = run.tables[best]
    assert rec["sensitivity"] == m.sensitivity and rec["base_sensitivity"] == m.base_sensitivity
    json.dumps(rec)


def test_ssc_returns_its_best_round_and_applies_it(ssc):
    """The kept round has the fewest spikes among rounds whose end-to-end KL S meets the budget
    measured around their own choice (L·S ≤ B), round 1 otherwise; θ_l = r_l·θ_l."""
    run = ssc[4]
    rec, rounds = run.record, run.record["rounds"]
    L = len(run.before)
    assert rec["kl_target"] == pytest.approx(rec["budget"] / L)
    for e in rounds:
        assert e["within_budget"] == (L * e["kl"] <= budget_limit(rec["budget"]))
    ok = [i for i, e in enumerate(rounds) if e["within_budget"]]
    best = min(ok, key=lambda i: (rounds[i]["spikes"], i)) if ok else 0
    assert rec["returned_round"] == best + 1
    kept = rounds[best]
    if rounds[0]["within_budget"]:
        assert kept["spikes"] <= rounds[0]["spikes"]
    assert rec["ratio"] == kept["ratio"]
    for site, theta, r in zip(run.net.sites, run.before, kept["ratio"], strict=True):
        assert torch.equal(site.theta, theta * r)
    assert _end_to_end_kl(run) == pytest.approx(kept["kl"], rel=1e-6)
    json.dumps(rec)


# --- the driver and the choice of round, on made-up tables -------------------------------------


def _tables(kl: float) -> Measurements:
    return Measurements([[kl]], [[1.0]], base_sensitivity=kl, base_spikes=[10 * kl], site_steps=1)


def _driver(moves: dict, rounds: int, infeasible: tuple = ()):
    """:func:`iterate_rounds` on one site whose choice after reference s is ``moves[s]``; the
    whole network at s has KL s/10. Returns the result and the settings measured, scored."""
    measured: list[tuple] = []
    scored: list[tuple] = []
    at: list[tuple] = [(0,)]

    def measure(s):
        measured.append(s)
        at.append(s)
        return _tables(s[0] / 10)

    def score(s):
        scored.append(s)
        return _tables(s[0] / 10)

    def solve(m):
        ref = at[-1]
        if ref in infeasible:
            raise ConfigError("neuron.rho", "infeasible")
        return moves[ref], Choice([0], 0.0, 0.0), 1.0

    result = iterate_rounds((0,), _tables(0.0), measure, score, solve, rounds)
    return result, measured, scored


@pytest.mark.parametrize(
    ("moves", "rounds", "stop", "choices", "measured", "scored"),
    [
        ({(0,): (1,), (1,): (2,), (2,): (2,)}, 9, STABLE, [1, 2, 2], [1, 2], []),
        ({(0,): (0,)}, 9, STABLE, [0], [], []),  # the first choice is the reference
        ({(0,): (1,), (1,): (2,), (2,): (1,)}, 9, CYCLE, [1, 2, 1], [1, 2], []),
        ({(0,): (1,), (1,): (0,)}, 9, CYCLE, [1, 0], [1], []),  # back to the start
        ({(0,): (1,), (1,): (2,), (2,): (3,)}, 3, EXHAUSTED, [1, 2, 3], [1, 2], [3]),
        ({(0,): (1,)}, 1, EXHAUSTED, [1], [], [1]),
    ],
)
def test_rounds_stop_at_the_first_repeat(moves, rounds, stop, choices, measured, scored):
    """Each round measures once around the previous choice; a choice already measured around
    stops the rounds at once (no more tables, no scoring run); the last new choice of the
    last round is scored by one whole-network run; every round's choice gets its KL."""
    result, m, s = _driver(moves, rounds)
    assert result.stop == stop
    assert [r.choice[0] for r in result.done] == choices
    assert [x[0] for x in m] == measured and [x[0] for x in s] == scored
    assert [r.kl for r in result.done] == [c / 10 for c in choices]
    assert [r.reference[0] for r in result.done] == [0, *choices[:-1]]
    assert result.site_steps == 1 + len(measured) and result.evaluation_site_steps == len(scored)


def test_a_round_without_a_choice_stops_the_rounds_but_round_one_raises():
    result, measured, _ = _driver({(0,): (1,), (1,): (2,)}, 5, infeasible=((1,),))
    assert result.stop == INFEASIBLE and "infeasible" in result.detail
    assert [r.choice for r in result.done] == [(1,)] and result.done[0].kl == 0.1
    with pytest.raises(ConfigError):
        _driver({}, 5, infeasible=((0,),))


def _round(kl: float, cost: float) -> Round:
    return Round((0,), _tables(0.0), (0,), Choice([0], 0.0, 0.0), 1.0, kl, cost)


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        ([(0.3, 5), (0.2, 5), (0.1, 20)], 1),  # lowest KL among those within (cost <= 10)
        ([(0.3, 5), (0.3, 5)], 0),  # ties: the earliest
        ([(0.3, 20), (0.9, 5)], 1),  # round 1 over budget: a within-budget round wins
        ([(0.3, 20), (0.1, 30)], 0),  # none within: round 1
    ],
)
def test_the_kept_round_is_the_best_within_budget(rounds, expected):
    done = [_round(kl, cost) for kl, cost in rounds]
    within: Callable[[Round], bool] = lambda r: r.cost <= 10  # noqa: E731
    assert best_round(done, within, lambda r: r.kl) == expected


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1.5, "x", True])
def test_bad_rounds_name_the_key(value):
    with pytest.raises(ConfigError) as info:
        AdaFireNeuron(rounds=value)
    assert info.value.key == "neuron.rounds"
    with pytest.raises(ConfigError) as info:
        SpikeCompression(rounds=value)
    assert info.value.key == "compression.rounds"


def test_rounds_default_to_one_in_the_configs(compose_config, tmp_path):
    cfg = compose_config(["neuron=adafire", "compression=ssc"], output_dir=tmp_path)
    assert build(cfg.neuron).rounds == 1 and build(cfg.compression).rounds == 1
    cfg = compose_config(["neuron=adafire", "neuron.rounds=3", "compression=ssc"], tmp_path)
    assert build(cfg.neuron).rounds == 3
    for override, key in (
        ("neuron.rounds=0", "neuron.rounds"),
        ("compression.rounds=x", "compression.rounds"),
    ):
        cfg = compose_config(["neuron=adafire", "compression=ssc", override], output_dir=tmp_path)
        with pytest.raises(ConfigError) as info:
            build(cfg[key.split(".")[0]])
        assert info.value.key == key
