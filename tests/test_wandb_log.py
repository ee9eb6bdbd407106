"""W&B reporting (adacal.reporting.wandb_log): pure rows, a fake Run, and real offline runs.

The real runs are ``mode="offline"`` (never the network): they write
``<save_dir>/wandb/offline-run-*/`` with the media files and the run's transaction log
(``run-<id>.wandb``), which :func:`_records` reads back to check what was logged.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from adacal.reporting import wandb_log
from adacal.reporting.wandb_log import (
    curve_rows,
    headline,
    log_checkpoint,
    log_rendered_table,
    log_run,
    site_rows,
)

# --- fabricated flat metrics -------------------------------------------------------------

CLASSIFICATION = {
    "ann/test/acc": 0.98,
    "ann/macs": 1_000_000.0,
    "ann/energy_uj": 4.6,
    # T=16 before T=4: the rows must sort numerically
    "snn/test/acc_T16": 0.975,
    "snn/test/spikes_T16": 4000.0,
    "snn/test/rate_T16": 0.0625,
    "snn/test/sops_T16": 800_000.0,
    "snn/test/energy_uj_T16": 0.75,
    "snn/test/mean_timesteps_T16": 16.0,
    "snn/test/anytime_T16/acc_t8": 0.97,
    "snn/test/site0_rate_T16": 0.25,
    "snn/test/site2_rate_T16": 0.125,
    "snn/test/site10_rate_T16": 0.5,
    "snn/test/site0_acs_T16": 100.0,
    "snn/test/site2_acs_T16": 200.0,
    "snn/test/site10_acs_T16": 300.0,
    "snn/adafire/site0_phi_T16": 2.0,
    "snn/adafire/site2_phi_T16": 3.0,
    "snn/ssc/site10_ratio_T16": 0.5,
    "snn/test/acc_T4": 0.96,
    "snn/test/spikes_T4": 1000.0,
    "snn/test/rate_T4": 0.125,
    "snn/test/sops_T4": 500_000.0,
    "snn/test/acs_T4": 450_000.0,
    "snn/test/energy_uj_T4": 0.5,
    "snn/test/saving_vs_ann_T4": 0.875,
    "snn/test/saving_vs_baseline_T4": 0.25,
    "snn/test/mean_timesteps_T4": 4.0,
    "snn/test/site0_rate_T4": 0.75,
    "snn/baseline/acc_T4": 0.95,
    "snn/baseline/sops_T4": 600_000.0,
    "snn/baseline/acs_T4": 550_000.0,
    "snn/baseline/energy_uj_T4": 0.625,
    "snn/baseline/mean_timesteps_T4": 4.0,
    "snn/time/calibration_s_T4": 1.5,
}
CLASSIFICATION_ROWS = [
    {
        "T": 4,
        "acc": 0.96,
        "spikes": 1000.0,
        "rate": 0.125,
        "sops": 500_000.0,
        "energy_uj": 0.5,
        "saving_vs_ann": 0.875,
        "saving_vs_baseline": 0.25,
        "mean_timesteps": 4.0,
        "baseline/acc": 0.95,
        "baseline/sops": 600_000.0,
        "baseline/energy_uj": 0.625,
        "baseline/mean_timesteps": 4.0,
    },
    {
        "T": 16,
        "acc": 0.975,
        "spikes": 4000.0,
        "rate": 0.0625,
        "sops": 800_000.0,
        "energy_uj": 0.75,
        "mean_timesteps": 16.0,
    },
]

SEGMENTATION = {
    "ann/test/miou": 0.75,
    "ann/test/pixel_acc": 0.875,
    "snn/test/miou_T8": 0.625,
    "snn/test/pixel_acc_T8": 0.8125,
    "snn/test/class0_iou_T8": 0.5,
    "snn/test/anytime_T8/miou_t4": 0.5,
    "snn/test/sops_T8": 2e9,
    "snn/test/energy_uj_T8": 1800.0,
    "snn/test/mean_timesteps_T8": 8.0,
    "snn/test/pixel_acc_T2": 0.5,  # no miou at T=2: not a fitted T of a miou run
    "snn/baseline/miou_T8": 0.5,
    "snn/baseline/pixel_acc_T8": 0.75,
    "snn/baseline/energy_uj_T8": 2000.0,
}

IAT = {
    "ann/test/acc": 0.9,
    "snn/test/acc_T4": 0.875,
    "snn/test/mean_timesteps_T4": 2.5,
    "snn/test/energy_uj_T4": 0.25,
    "snn/test/exit_t1_T4": 0.25,
    "snn/test/exit_t2_T4": 0.25,
    "snn/test/exit_t3_T4": 0.25,
    "snn/test/exit_t4_T4": 0.25,
    "snn/full/acc_T4": 0.9,
    "snn/full/energy_uj_T4": 0.5,
    "snn/full/mean_timesteps_T4": 4.0,
    "snn/uncompressed/acc_T4": 0.8125,
    "snn/test/acc_T2": 0.5,
    "snn/test/mean_timesteps_T2": 1.5,
    "snn/test/exit_t1_T2": 0.5,  # incomplete histogram: no exit fraction
}


def test_curve_rows_classification():
    assert curve_rows(CLASSIFICATION) == CLASSIFICATION_ROWS
    assert curve_rows(CLASSIFICATION, names=("acc",)) == CLASSIFICATION_ROWS
    assert [list(row) for row in curve_rows(CLASSIFICATION)] == [
        list(row) for row in CLASSIFICATION_ROWS
    ]  # column order: T, scores, the snn/test quantities, then the sub-records


def test_curve_rows_segmentation():
    assert curve_rows(SEGMENTATION, names=("miou", "pixel_acc")) == [
        {
            "T": 8,
            "miou": 0.625,
            "pixel_acc": 0.8125,
            "sops": 2e9,
            "energy_uj": 1800.0,
            "mean_timesteps": 8.0,
            "baseline/miou": 0.5,
            "baseline/pixel_acc": 0.75,
            "baseline/energy_uj": 2000.0,
        }
    ]
    assert curve_rows(SEGMENTATION) == []  # no acc keys: nothing fitted for "acc"


def test_curve_rows_iat():
    assert curve_rows(IAT) == [
        {"T": 2, "acc": 0.5, "mean_timesteps": 1.5},
        {
            "T": 4,
            "acc": 0.875,
            "energy_uj": 0.25,
            "mean_timesteps": 2.5,
            "early_exit_fraction": 0.75,
            "full/acc": 0.9,
            "full/energy_uj": 0.5,
            "full/mean_timesteps": 4.0,
            "uncompressed/acc": 0.8125,
        },
    ]
    assert wandb_log.exit_fraction(IAT, 4) == 0.75
    assert wandb_log.exit_fraction(IAT, 2) is None
    assert wandb_log.exit_fraction(CLASSIFICATION, 4) is None


def test_curve_rows_without_snn():
    assert curve_rows({"ann/test/acc": 0.9}) == []
    assert headline({"ann/test/acc": 0.9}) == {"headline/ann_acc": 0.9}


def test_site_rows_sorted_with_phi_and_ratio():
    assert site_rows(CLASSIFICATION, 16) == [
        {"site": 0, "rate": 0.25, "acs": 100.0, "phi": 2.0},
        {"site": 2, "rate": 0.125, "acs": 200.0, "phi": 3.0},
        {"site": 10, "rate": 0.5, "acs": 300.0, "ssc_ratio": 0.5},
    ]
    assert site_rows(CLASSIFICATION, 4) == [{"site": 0, "rate": 0.75}]
    assert site_rows(CLASSIFICATION, 8) == []


def test_headline_numbers():
    assert headline(CLASSIFICATION) == {
        "headline/T": 16,
        "headline/acc": 0.975,
        "headline/ann_acc": 0.98,
        "headline/delta_acc": pytest.approx(0.975 - 0.98),
        "headline/ann_energy_uj": 4.6,
        "headline/sops": 800_000.0,
        "headline/energy_uj": 0.75,
        "headline/mean_timesteps": 16.0,
    }
    assert headline(IAT) == {
        "headline/T": 4,
        "headline/acc": 0.875,
        "headline/ann_acc": 0.9,
        "headline/delta_acc": 0.875 - 0.9,
        "headline/energy_uj": 0.25,
        "headline/mean_timesteps": 2.5,
        "headline/early_exit_fraction": 0.75,
    }
    seg = headline(SEGMENTATION, ("miou", "pixel_acc"))
    assert seg["headline/miou"] == 0.625 and seg["headline/ann_pixel_acc"] == 0.875
    assert seg["headline/delta_miou"] == 0.625 - 0.75


def test_artifact_name():
    assert wandb_log.artifact_name("ann", "digits", "small_cnn") == "ann-digits-small_cnn"
    assert wandb_log.artifact_name("ann", "a/b c", "v1.0") == "ann-a-b-c-v1.0"


# --- a fake Run ----------------------------------------------------------------------------


class FakeRun:
    """Records the calls :mod:`wandb_log` makes on a W&B Run."""

    def __init__(self, fail_log: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.summary: dict[str, Any] = {}
        self.artifacts: list[Any] = []
        self.finished = 0
        self.fail_log = fail_log

    def define_metric(self, name: str, **kwargs: Any) -> None:
        self.calls.append(("define_metric", name, kwargs))

    def log(self, data: dict[str, Any]) -> None:
        if self.fail_log:
            raise RuntimeError("log failed")
        self.calls.append(("log", data))

    def log_artifact(self, artifact: Any, **kwargs: Any) -> None:
        self.artifacts.append(artifact)

    def finish(self) -> None:
        self.finished += 1


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Every W&B folder (data, staging, cache, config, runs) under tmp_path; offline, quiet."""
    for var, sub in (
        ("WANDB_DIR", "wandb_dir"),
        ("WANDB_DATA_DIR", "wandb_data"),
        ("WANDB_CACHE_DIR", "wandb_cache"),
        ("WANDB_CONFIG_DIR", "wandb_config"),
        ("WANDB_ARTIFACT_DIR", "wandb_artifacts"),
    ):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    return tmp_path


def _curve_step(row: dict[str, Any]) -> dict[str, Any]:
    return {"T": row["T"], **{f"curve/{k}": v for k, v in row.items() if k != "T"}}


def test_log_run_fake():
    run = FakeRun()
    log_run(run, CLASSIFICATION, ("acc",))
    by_name = [
        ("define_metric", f"curve/{key}", {"step_metric": "T"}) for key in CLASSIFICATION_ROWS[0]
    ][1:]
    assert by_name[0] == ("define_metric", "curve/acc", {"step_metric": "T"})
    assert run.calls[: 2 + len(by_name) + 2] == [
        ("define_metric", "T", {}),
        ("define_metric", "curve/*", {"step_metric": "T"}),
        *by_name,
        ("log", _curve_step(CLASSIFICATION_ROWS[0])),
        ("log", _curve_step(CLASSIFICATION_ROWS[1])),
    ]
    steps = [c[1] for c in run.calls if c[0] == "log"]
    assert steps[0]["T"] == 4 and steps[0]["curve/acc"] == 0.96
    assert steps[0]["curve/baseline/energy_uj"] == 0.625
    assert steps[1] == {
        "T": 16,
        "curve/acc": 0.975,
        "curve/spikes": 4000.0,
        "curve/rate": 0.0625,
        "curve/sops": 800_000.0,
        "curve/energy_uj": 0.75,
        "curve/mean_timesteps": 16.0,
    }
    assert len(run.calls) == 2 + len(by_name) + 3
    kind, tables = run.calls[-1]
    assert kind == "log" and set(tables) == {"per_T", "site_rates"}
    per_t = tables["per_T"]
    assert per_t.columns == list(CLASSIFICATION_ROWS[0])
    assert per_t.data == [
        [row.get(c) for c in CLASSIFICATION_ROWS[0]] for row in CLASSIFICATION_ROWS
    ]
    assert per_t.data[1][:2] == [16, 0.975] and per_t.data[1][-1] is None
    sites = tables["site_rates"]  # at the largest T (16)
    assert sites.columns == ["site", "rate", "acs", "phi", "ssc_ratio"]
    assert sites.data == [
        [0, 0.25, 100.0, 2.0, None],
        [2, 0.125, 200.0, 3.0, None],
        [10, 0.5, 300.0, None, 0.5],
    ]
    assert run.summary == headline(CLASSIFICATION)
    assert run.artifacts == [] and run.finished == 0  # the pipeline finishes the run


def test_log_run_fake_iat_and_ann_only():
    run = FakeRun()
    log_run(run, IAT)
    logged = [c[1] for c in run.calls if c[0] == "log"]
    assert logged[0] == {"T": 2, "curve/acc": 0.5, "curve/mean_timesteps": 1.5}
    assert logged[1]["curve/early_exit_fraction"] == 0.75
    assert logged[1]["curve/full/acc"] == 0.9
    assert set(logged[2]) == {"per_T"}  # no per-site rates in this record
    ann_only = FakeRun()
    log_run(ann_only, {"ann/test/acc": 0.9})
    assert ann_only.calls == [] and ann_only.summary == {"headline/ann_acc": 0.9}


def test_log_checkpoint_fake(tmp_path, wandb_env):
    import torch

    from adacal.checkpoint import save_state_dict

    path = tmp_path / "ckpt" / "ann.pt"
    digest = save_state_dict(torch.nn.Linear(2, 3), path, "python run.py x=1")
    run = FakeRun()
    artifact = log_checkpoint(run, path, "ann-digits-small_cnn", {"seed": 0})
    assert run.artifacts == [artifact]
    assert artifact.type == "model" and artifact.name == "ann-digits-small_cnn"
    assert artifact.metadata == {"seed": 0, "file": "ann.pt", "sha256": digest}
    assert set(artifact.manifest.entries) == {"ann.pt", "ann.pt.sha256", "ann.pt.cmd"}
    with pytest.raises(FileNotFoundError):
        log_checkpoint(run, tmp_path / "missing.pt", "x", {})


class _FakeImage:
    def __init__(self, path: str) -> None:
        self.path = path


def test_log_rendered_table_fake(monkeypatch, tmp_path):
    import wandb

    runs: list[tuple[FakeRun, dict[str, Any]]] = []

    def fake_init(**kwargs: Any) -> FakeRun:
        run = FakeRun(fail_log=bool(runs))  # the second run fails in log
        runs.append((run, kwargs))
        return run

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "Image", _FakeImage)
    rows = [{"method": "IF", "T=4": 90.5}, {"method": "AdaFire", "T=4": "-", "T=8": 93.0}]
    log_rendered_table(
        rows,
        ["method", "T=4", "T=8"],
        {"frontier": tmp_path / "frontier.png"},
        project="adacal",
        group="sweep",
        save_dir=tmp_path / "tables",
        name="table1",
    )
    run, kwargs = runs[0]
    assert kwargs["job_type"] == "table" and kwargs["group"] == "sweep"
    assert kwargs["project"] == "adacal" and kwargs["entity"] is None
    assert kwargs["mode"] == "offline" and kwargs["dir"] == str(tmp_path / "tables")
    assert kwargs["name"] == "table1" and kwargs["reinit"] == "create_new"
    assert (tmp_path / "tables").is_dir()
    assert len(run.calls) == 1 and run.finished == 1
    payload = run.calls[0][1]
    assert set(payload) == {"table1", "figures/frontier"}
    assert payload["table1"].columns == ["method", "T=4", "T=8"]
    assert payload["table1"].data == [["IF", 90.5, None], ["AdaFire", "-", 93.0]]
    assert payload["figures/frontier"].path == str(tmp_path / "frontier.png")
    with pytest.raises(RuntimeError, match="log failed"):
        log_rendered_table(rows, ["method"], {}, project="p", group="g", save_dir=tmp_path)
    assert runs[1][0].finished == 1  # finished in the finally


# --- real offline runs ---------------------------------------------------------------------


def _read_journal(data: bytes) -> list[Any]:
    """The complete protobuf records in the bytes of a run's transaction log.

    The log is a LevelDB-style journal: a 7-byte file header, then 32 KiB blocks of chunks
    (checksum u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last). A record cut off
    by the end of ``data`` (still being written) is left out.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _records(run_dir: Path, timeout: float = 30.0) -> list[Any]:
    """The records of an offline run's ``run-<id>.wandb``, once its exit record is written.

    ``finish()`` can return a moment before wandb-core has flushed the log, so this waits
    (up to ``timeout`` seconds) for the exit record.
    """
    (path,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        records = _read_journal(path.read_bytes())
        if any(r.HasField("exit") for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _key(item: Any) -> str:
    """A history or summary item's key (``key``, or its ``nested_key`` path joined by ``/``)."""
    return item.key or "/".join(item.nested_key)


def _offline_run(save_dir: Path) -> Path:
    runs = sorted((save_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_log_rendered_table_offline(wandb_env, tmp_path):
    from PIL import Image

    image = tmp_path / "frontier.png"
    Image.new("RGB", (8, 6), (200, 30, 30)).save(image)
    rows = [{"method": "IF", "T=4": "90.50"}, {"method": "AdaFire", "T=4": 91.25, "T=8": "-"}]
    save_dir = tmp_path / "sweep"
    log_rendered_table(
        rows,
        ["method", "T=4", "T=8"],
        {"frontier": image},
        project="adacal",
        group="ablation",
        save_dir=save_dir,
    )
    run_dir = _offline_run(save_dir)
    (table_file,) = (run_dir / "files" / "media" / "table").glob("table_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["method", "T=4", "T=8"]
    assert table["data"] == [["IF", "90.50", None], ["AdaFire", 91.25, "-"]]
    (png,) = (run_dir / "files" / "media" / "images" / "figures").glob("frontier_*.png")
    assert png.read_bytes() == image.read_bytes()
    records = _records(run_dir)
    (run_record,) = [r.run for r in records if r.HasField("run")]
    assert run_record.job_type == "table" and run_record.run_group == "ablation"
    assert run_record.project == "adacal" and run_record.display_name == "table"
    assert any(r.HasField("exit") for r in records)  # finished


def test_pipeline_logs_curves_and_checkpoint_offline(
    wandb_env, compose_config, tiny_overrides, tmp_path
):
    from adacal.pipeline import run

    out = tmp_path / "job"
    overrides = [o for o in tiny_overrides if not o.startswith("logger=")]
    overrides += ["logger=wandb", "logger.mode=offline", "logger.log_model=true"]
    metrics = run(compose_config(overrides, output_dir=out))
    run_dir = _offline_run(out)
    (per_t_file,) = (run_dir / "files" / "media" / "table").glob("per_T_*.table.json")
    per_t = json.loads(per_t_file.read_text())
    (row,) = curve_rows(metrics)
    assert per_t["columns"] == list(row) and per_t["columns"][:2] == ["T", "acc"]
    assert per_t["data"] == [pytest.approx(list(row.values()))]
    assert per_t["data"][0][0] == 2
    (sites_file,) = (run_dir / "files" / "media" / "table").glob("site_rates_*.table.json")
    sites = json.loads(sites_file.read_text())
    assert sites["columns"] == ["site", "rate", "acs", "acs_messages"]
    assert [s[0] for s in sites["data"]] == list(range(len(sites["data"]))) != []
    assert all(s[2] == s[3] for s in sites["data"])  # IF: a message is a spike

    records = _records(run_dir)
    history = [
        {_key(item): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.HasField("history")
    ]
    curve = [h for h in history if "curve/acc" in h]
    assert [(h["T"], h["curve/acc"]) for h in curve] == [(2, metrics["snn/test/acc_T2"])]
    assert curve[0]["curve/sops"] == pytest.approx(metrics["snn/test/sops_T2"])
    assert any(h.get("snn/test/acc_T2") == metrics["snn/test/acc_T2"] for h in history)
    # both energy conventions reach W&B: the flat keys and the curves
    messages = metrics["snn/test/energy_messages_uj_T2"]
    assert curve[0]["curve/energy_messages_uj"] == pytest.approx(messages)
    assert any(h.get("snn/test/energy_messages_uj_T2") == messages for h in history)
    defined = {
        r.metric.glob_name or r.metric.name: r.metric for r in records if r.HasField("metric")
    }
    assert defined["curve/*"].step_metric == "T"
    assert defined["*"].step_metric == "trainer/global_step"  # Lightning's glob ...
    for key in row:  # ... loses against the curve keys defined by name
        if key != "T":
            assert defined[f"curve/{key}"].step_metric == "T", key
    summary = {}
    for r in records:
        if r.HasField("summary"):
            summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
    assert summary["headline/T"] == 2
    assert summary["headline/acc"] == pytest.approx(metrics["snn/test/acc_T2"])
    assert summary["headline/ann_acc"] == pytest.approx(metrics["ann/test/acc"])
    arts = [r.artifact for r in records if r.HasField("artifact")]
    (ann,) = [a for a in arts if a.name == "ann-digits-small_cnn"]
    assert ann.type == "model"
    meta = json.loads(ann.metadata)
    assert meta["sha256"] == (out / "ann.pt.sha256").read_text().split()[0]
    assert meta["experiment"] == "digits_small_cnn" and meta["file"] == "ann.pt"
    paths = {entry.path for entry in ann.manifest.contents}
    assert paths == {"ann.pt", "ann.pt.sha256", "ann.pt.cmd"}


def test_disabled_mode_is_a_no_op(wandb_env, tmp_path, monkeypatch):
    """WANDB_MODE=disabled (CI) wins over the offline default: nothing is written, no error."""
    import torch
    import wandb

    from adacal.checkpoint import save_state_dict

    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = tmp_path / "ann.pt"
    save_state_dict(torch.nn.Linear(2, 2), path, "x")
    run = wandb.init(mode="disabled", dir=str(tmp_path), reinit="create_new")
    try:
        log_run(run, CLASSIFICATION)
        log_checkpoint(run, path, "ann-x", {})
    finally:
        run.finish()
    log_rendered_table(
        [{"a": 1}], ["a"], {}, project="p", group="g", mode="disabled", save_dir=tmp_path / "t"
    )
    assert not list(tmp_path.rglob("offline-run-*"))
