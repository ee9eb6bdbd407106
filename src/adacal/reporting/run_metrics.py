"""Flat metric keys of one SNN evaluation (pure functions of the evaluator's results).

Keys (T = the target timesteps): ``snn/test/acc_T{T}``, ``spikes_T{T}``, ``rate_T{T}``,
``anytime_T{T}/acc_t{t}``, per-site rates; SOPs and energy (``energy_metrics``, the
convention of :mod:`adacal.metrics.energy`) under any prefix (``snn/test``,
``snn/full``, ``snn/uncompressed``, or none for the baseline); the searches' choices
(``snn/adafire/site{i}_phi_T{T}``, ``snn/ssc/site{i}_ratio_T{T}``) and times.
"""

from __future__ import annotations

from typing import Any

import torch

from adacal.metrics import energy


def energy_metrics(
    net: Any, example: torch.Tensor, res: dict[str, Any], T: int, prefix: str
) -> dict[str, float]:
    """SOPs and energy per image (convention: :mod:`adacal.metrics.energy`)."""
    steps = float(res.get("mean_timesteps", T))
    report = energy.snn_energy(
        res["sops"], energy.dense_macs(net, example), steps, energy.ann_macs(net, example)
    )
    p = f"{prefix}/" if prefix else ""
    out = {
        f"{p}sops_T{T}": report.sops,
        f"{p}acs_T{T}": float(res["sops"]),
        f"{p}energy_uj_T{T}": report.energy_pj / 1e6,
        f"{p}saving_vs_ann_T{T}": report.saving_vs_ann,
        f"{p}mean_timesteps_T{T}": steps,
    }
    if prefix:
        for site, sops in zip(net.sites, res["site_sops"], strict=True):
            out[f"{p}site{site.index}_acs_T{T}"] = sops
        for t, share in enumerate(res.get("exit_hist") or [], start=1):
            out[f"{p}exit_t{t}_T{T}"] = share
    return out


def search_metrics(record: dict[str, Any], T: int) -> dict[str, float]:
    """Chosen φ and SSC ratio per site, and the search times."""
    out: dict[str, float] = {}
    if "adafire" in record:
        for i, phi in enumerate(record["adafire"]["phi"]):
            out[f"snn/adafire/site{i}_phi_T{T}"] = float(phi)
        out[f"snn/time/adafire_search_s_T{T}"] = record["adafire"]["seconds"]
    for name, rec in record.items():
        if "ratio" in rec:
            for i, r in enumerate(rec["ratio"]):
                out[f"snn/{name}/site{i}_ratio_T{T}"] = float(r)
            out[f"snn/time/{name}_search_s_T{T}"] = rec["seconds"]
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
    out = {f"snn/test/{name}_T{T}": res[f"{name}_t{T}"] for name in names}
    out |= {
        f"snn/test/spikes_T{T}": res["spikes"],
        f"snn/test/rate_T{T}": res["spikes"] / (neurons * T),
        f"snn/time/calibration_s_T{T}": calib_s,
        f"snn/time/evaluation_s_T{T}": eval_s,
    }
    for key, value in res.items():
        if any(key.startswith(f"{name}_t") for name in names):
            out[f"snn/test/anytime_T{T}/{key}"] = value
    for k, iou in enumerate(res.get("class_iou") or []):
        out[f"snn/test/class{k}_iou_T{T}"] = iou
    for site, spikes in zip(net.sites, res["site_spikes"], strict=True):
        out[f"snn/test/site{site.index}_rate_T{T}"] = spikes / (site.neurons_per_sample * T)
    return out
