"""The W&B run's lifecycle (issue 11, "W&B lifecycle"): an online run checks its login before
any work (one line naming logger.mode, exit 2), the run starts at the beginning with the full
config, and it ends marked failed when the run fails. The default offline path runs too."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import TINY_DATA, error_lines, run_cli  # noqa: E402
from adacal.checkpoint import save_state_dict  # noqa: E402
from adacal.errors import ConfigError  # noqa: E402
from adacal.models import small_cnn  # noqa: E402
from adacal.reporting import wandb_log  # noqa: E402

BASE = [*TINY_DATA, "snn.T=[2]", "snn.compare_baseline=false", "logger=wandb"]


@pytest.fixture
def nan_ckpt(tmp_path) -> Path:
    """A checkpoint with one NaN weight: the run fails its health check right after loading."""
    torch.manual_seed(0)
    model = small_cnn(10, in_channels=1, width=8)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = math.nan
    path = tmp_path / "ckpt" / "ann.pt"
    save_state_dict(model, path, "test")
    return path


def test_online_without_login_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import wandb

    monkeypatch.setattr(wandb, "login", lambda **kwargs: False)  # no credentials anywhere
    run_dir = tmp_path / "run"
    result = run_cli([*BASE, "logger.mode=online", "trainer.max_epochs=1"], run_dir, capsys)
    assert result.code == 2, result.stderr[-2000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("adacal: configuration error: logger.mode: ")
    assert "wandb login" in lines[0] and "logger.mode=offline" in lines[0]
    assert result.record["status"] == "failed" and result.record["stopped_at"]["stage"] == "setup"
    assert not (run_dir / "ann.pt").exists() and not (run_dir / "wandb").exists()


def test_login_check_only_for_online_mode(monkeypatch):
    import wandb

    monkeypatch.setattr(wandb, "login", lambda **kwargs: pytest.fail("no login offline"))
    for mode in ("offline", "disabled", None):
        wandb_log.require_login(mode)
    monkeypatch.setattr(wandb, "login", lambda **kwargs: True)
    wandb_log.require_login("online")
    monkeypatch.setattr(wandb, "login", lambda **kwargs: False)
    with pytest.raises(ConfigError) as info:
        wandb_log.require_login("online")
    assert info.value.key == "logger.mode"


class FakeRun:
    def __init__(self) -> None:
        self.summary: dict = {}
        self.exit_code: int | None = None

    def finish(self, exit_code: int | None = None) -> None:
        self.exit_code = exit_code


def test_finish_marks_the_run():
    from adacal.errors import HealthError

    ok, failed = FakeRun(), FakeRun()
    wandb_log.finish(ok)
    wandb_log.finish(failed, HealthError("ann.optim.lr", "diverged"))
    assert ok.exit_code == 0 and ok.summary["status"] == "ok"
    assert failed.exit_code == 1 and failed.summary["status"] == "failed"
    assert failed.summary["error"] == "HealthError: ann.optim.lr: diverged"


def test_run_starts_first_with_the_config_and_ends_failed(tmp_path, capsys, monkeypatch, nan_ckpt):
    """Order of events of a failing run (WANDB_MODE=disabled: the real calls, no files)."""
    import adacal.pipeline as pipeline
    from adacal.errors import HealthError

    events: list = []
    start, finish, build = wandb_log.start, wandb_log.finish, pipeline.build

    def recording_start(logger, config, mode=None):
        events.append(("start", config))
        start(logger, config, mode)

    def recording_finish(run, error=None, exit_code=None):
        events.append(("finish", error, exit_code))
        finish(run, error, exit_code)

    def recording_build(node, **kwargs):
        target = node.get("_target_") if OmegaConf.is_dict(node) else "list"  # e.g. the steps
        events.append(("build", str(target)))
        return build(node, **kwargs)

    monkeypatch.setattr(wandb_log, "start", recording_start)
    monkeypatch.setattr(wandb_log, "finish", recording_finish)
    monkeypatch.setattr(pipeline, "build", recording_build)
    result = run_cli([*BASE, f"ann.checkpoint={nan_ckpt}"], tmp_path / "run", capsys)
    assert result.code == 3, result.stderr[-2000:]
    kinds = [e[0] for e in events]
    first_data = next(i for i, e in enumerate(events) if e[0] == "build" and "data" in e[1])
    assert kinds.index("start") < first_data  # the run exists before any data is loaded
    config = events[kinds.index("start")][1]
    assert config["snn"]["T"] == [2] and config["ann"]["checkpoint"] == str(nan_ckpt)
    assert kinds.count("finish") == 1
    _, error, exit_code = events[kinds.index("finish")]
    assert isinstance(error, HealthError) and exit_code == 1


def test_default_offline_path_records_a_failed_run(tmp_path, capsys, monkeypatch, nan_ckpt):
    """logger=wandb with its default mode (offline): the run directory is written, with the
    config logged at the start and the failure in the summary."""
    import wandb

    wandb.teardown()  # a fresh W&B session that reads this environment
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    try:
        result = run_cli([*BASE, f"ann.checkpoint={nan_ckpt}"], run_dir, capsys)
    finally:
        wandb.teardown()  # waits until the service has written the run's file
    assert result.code == 3, result.stderr[-2000:]
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert b"calibration" in data and b"experiment_name" in data  # the config
    assert b"HealthError: ann.checkpoint" in data  # the summary's error
