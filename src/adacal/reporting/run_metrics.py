"""Flat metric keys of one SNN evaluation (pure functions of the evaluator's results).

Keys (T = the target timesteps; formats and builders in :mod:`adacal.keys`):
``snn/test/acc_T{T}``, ``spikes_T{T}``, ``rate_T{T}``, ``anytime_T{T}/acc_t{t}``, per-site
rates; SOPs and energy (``energy_metrics``, the conventions of :mod:`adacal.metrics.energy`:
``spikes`` under the plain names, ``messages`` under :func:`adacal.keys.burst_name`'s) under any
prefix (``snn/test``, ``snn/full``, ``snn/uncompressed``, or none for the
baseline, :func:`baseline_energy_metrics`); the searches' choices
(``snn/adafire/site{i}_phi_T{T}``, ``snn/ssc/site{i}_ratio_T{T}``) and times; the saving
against the baseline (:func:`saving_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adacal import keys
from adacal.metrics import energy

# the evaluator's results holding the ACs per image (total, per site) of each convention
_COUNTS = {keys.SPIKES: ("sops", "site_sops"), keys.MESSAGES: ("messages", "site_messages")}


def conventions(res: Mapping[str, Any]) -> tuple[str, ...]:
    """The energy conventions (:data:`adacal.keys.BURSTS`) whose counts the evaluator's
    results ``res`` hold: ``spikes`` from ``sops``, ``messages`` from ``messages``."""
    return tuple(burst for burst, (total, _) in _COUNTS.items() if total in res)


def convention_metrics(
    cost: energy.CostModel, acs: float, steps: float, T: int, prefix: str, burst: str
) -> dict[str, float]:
    """SOPs, ACs, energy and saving vs the ANN per image in one convention ``burst`` from its
    ``acs`` per image over ``steps`` (mean) steps: ``{prefix}/{burst_name(name)}_T{T}``.

    SOPs = ACs + dense MACs·steps, E = E_MAC·dense MACs·steps + E_AC·ACs (the conventions
    differ only in the ACs: Σ n·f for ``spikes``, Σ 1[n > 0]·f for ``messages``)."""
    report = cost.energy(acs, steps)
    values = {
        "sops": report.sops,
        "acs": float(acs),
        "energy_uj": report.energy_pj / 1e6,
        "saving_vs_ann": report.saving_vs_ann,
    }
    return {keys.key(prefix, keys.burst_name(n, burst), T): v for n, v in values.items()}


def energy_metrics(
    cost: energy.CostModel, sites: Sequence[Any], res: dict[str, Any], T: int, prefix: str
) -> dict[str, float]:
    """SOPs and energy per image (convention: :mod:`adacal.metrics.energy`) of a network
    whose cost structure is ``cost`` and whose neuron sites are ``sites``, in every convention
    the results hold (:func:`conventions`; the ``spikes`` keys are the unsuffixed ones); with
    a prefix also the ACs per site and the share of samples exiting at each step."""
    steps = float(res.get("mean_timesteps", T))
    out = convention_metrics(cost, res["sops"], steps, T, prefix, keys.SPIKES)
    out[keys.key(prefix, "mean_timesteps", T)] = steps
    found = conventions(res)
    for burst in (b for b in found if b != keys.SPIKES):
        out |= convention_metrics(cost, res[_COUNTS[burst][0]], steps, T, prefix, burst)
    if prefix:
        for burst in found:
            name = keys.burst_name("acs", burst)
            for site, acs in zip(sites, res[_COUNTS[burst][1]], strict=True):
                out[keys.site_key(prefix, name, site.index, T)] = acs
        for t, share in enumerate(res.get("exit_hist") or [], start=1):
            out[keys.step_key(prefix, "exit", t, T)] = share
    return out


def baseline_energy_metrics(
    cost: energy.CostModel, sites: Sequence[Any], res: dict[str, Any], T: int
) -> dict[str, float]:
    """:func:`energy_metrics` of the SNN Calibration baseline, under ``snn/baseline/``
    (its totals only: no per-site ACs or exit shares)."""
    totals = energy_metrics(cost, sites, res, T, "")
    return {f"{keys.BASELINE}/{k}": v for k, v in totals.items()}


def score_metrics(
    prefix: str, res: Mapping[str, Any], T: int, names: Sequence[str]
) -> dict[str, float]:
    """``{prefix}/{name}_T{T}`` for each of the task's score names (acc; miou, pixel_acc)."""
    return {keys.key(prefix, name, T): res[f"{name}_t{T}"] for name in names}


def saving_metrics(metrics: Mapping[str, Any], T: int) -> dict[str, float]:
    """``snn/test/saving_vs_baseline_T{T}``: 1 − E/E_baseline at T (:func:`energy.saving`),
    from the ``energy_uj`` of ``snn/test`` and ``snn/baseline`` in ``metrics``; and
    ``snn/test/saving_vs_baseline_messages_T{T}`` from the ``energy_messages_uj`` of both
    when ``metrics`` hold them (the ``messages`` convention)."""
    out = {}
    for burst in keys.BURSTS:
        name = keys.burst_name("energy_uj", burst)
        own, base = keys.key(keys.TEST, name, T), keys.key(keys.BASELINE, name, T)
        if burst != keys.SPIKES and not (own in metrics and base in metrics):
            continue
        saving = energy.saving(float(metrics[own]), float(metrics[base]))
        out[keys.key(keys.TEST, keys.burst_name("saving_vs_baseline", burst), T)] = saving
    return out


def search_metrics(record: dict[str, Any], T: int) -> dict[str, float]:
    """Chosen φ and SSC ratio per site, the search times, and a calibration step's loss per
    site before and after (``snn/weights/site{i}_loss_before_T{T}``, ``..._loss_after_T{T}``)."""
    out: dict[str, float] = {}
    if "adafire" in record:
        for i, phi in enumerate(record["adafire"]["phi"]):
            out[keys.site_key(keys.ADAFIRE, keys.PHI, i, T)] = float(phi)
        out[keys.key(keys.TIME, "adafire_search_s", T)] = record["adafire"]["seconds"]
    for name, rec in record.items():
        for field in ("loss_before", "loss_after"):  # weight calibration, per site
            for i, loss in enumerate(rec.get(field, []) if isinstance(rec, dict) else []):
                if loss == loss:  # NaN: the site's region has no weights
                    out[keys.site_key(keys.snn(name), field, i, T)] = float(loss)
        if "ratio" in rec:
            for i, r in enumerate(rec["ratio"]):
                out[keys.site_key(keys.snn(name), keys.RATIO, i, T)] = float(r)
            out[keys.key(keys.TIME, f"{name}_search_s", T)] = rec["seconds"]
    return out


def snn_metrics(
    net: Any,
    res: dict[str, Any],
    T: int,
    calib_s: float,
    eval_s: float,
    names: tuple[str, ...] = ("acc",),
) -> dict[str, float]:
    """Scores (``snn/test/{name}_T{T}`` for the task's names), spikes, rates and times."""
    neurons = sum(s.neurons_per_sample for s in net.sites)
    out = score_metrics(keys.TEST, res, T, names)
    out |= {
        keys.key(keys.TEST, "spikes", T): res["spikes"],
        keys.key(keys.TEST, "rate", T): res["spikes"] / (neurons * T),
        keys.key(keys.TIME, "calibration_s", T): calib_s,
        keys.key(keys.TIME, "evaluation_s", T): eval_s,
    }
    for result, value in res.items():  # the evaluator's anytime scores: {name}_t{t}
        if (found := _anytime(result, names)) is not None:
            out[keys.anytime_key(keys.TEST, *found, T)] = value
    for k, iou in enumerate(res.get("class_iou") or []):
        out[keys.class_key(keys.TEST, "iou", k, T)] = iou
    for site, spikes in zip(net.sites, res["site_spikes"], strict=True):
        rate = spikes / (site.neurons_per_sample * T)
        out[keys.site_key(keys.TEST, "rate", site.index, T)] = rate
    return out


def _anytime(result: str, names: Sequence[str]) -> tuple[str, int] | None:
    """(name, t) of an evaluator result ``{name}_t{t}`` for one of ``names``, else None."""
    for name in names:
        step = result.removeprefix(f"{name}_t")
        if step != result and step.isdigit():
            return name, int(step)
    return None
