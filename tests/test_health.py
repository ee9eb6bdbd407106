"""A run whose numbers cannot be trusted fails (issue 11, "Health checks that fail a run"):
non-finite weights, losses or logits, an ANN at chance, an SNN at chance where its ANN is not.
Each ends with status "failed", one line naming the likely key, and exit status 3."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import TINY_DATA, error_lines, run_cli  # noqa: E402
from adacal.checkpoint import save_state_dict  # noqa: E402
from adacal.models import small_cnn  # noqa: E402

BASE = [*TINY_DATA, "snn.T=[2]", "logger=none", "snn.compare_baseline=false"]


def checkpoint(tmp_path: Path, change=None) -> Path:
    """A width-8 small CNN state dict (seeded), optionally changed in place by ``change``."""
    torch.manual_seed(0)
    model = small_cnn(10, in_channels=1, width=8)
    if change is not None:
        with torch.no_grad():
            change(model)
    path = tmp_path / "ckpt" / "ann.pt"
    save_state_dict(model, path, "test")
    return path


def assert_unhealthy(result, key: str, stage: str) -> str:
    lines = error_lines(result.stderr)
    assert result.code == 3, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"adacal: run failed a health check: {key}: ")
    assert "Traceback" not in result.stderr
    record = result.record
    assert record["status"] == "failed" and record["error"].startswith(f"HealthError: {key}: ")
    assert record["stopped_at"]["stage"] == stage
    return lines[0]


def test_diverged_training_fails_naming_the_learning_rate(tmp_path, capsys):
    """lr=1e8: the loss turns NaN within a few steps; was status "ok" at 10 % accuracy."""
    result = run_cli([*BASE, "ann.optim.lr=1e8", "trainer.max_epochs=1"], tmp_path / "run", capsys)
    line = assert_unhealthy(result, "ann.optim.lr", "ann")
    assert "lower ann.optim.lr (now 1e+08)" in line
    assert not (tmp_path / "run" / "ann.pt").exists()  # training stopped at the first NaN loss


def test_nan_weight_in_checkpoint_fails_naming_the_checkpoint(tmp_path, capsys):
    name = [n for n, _ in small_cnn(10, in_channels=1, width=8).named_parameters()][-2]
    ckpt = checkpoint(tmp_path, lambda m: m.get_parameter(name).view(-1)[0].fill_(math.nan))
    result = run_cli([*BASE, f"ann.checkpoint={ckpt}"], tmp_path / "run", capsys)
    line = assert_unhealthy(result, "ann.checkpoint", "ann")
    assert name in line and str(ckpt) in line


def test_infinite_logits_fail_naming_the_checkpoint(tmp_path, capsys):
    """Finite weights whose product overflows float32: the logits are not finite."""

    def huge(model):
        for p in model.parameters():
            p.fill_(1e30)

    ckpt = checkpoint(tmp_path, huge)
    result = run_cli([*BASE, f"ann.checkpoint={ckpt}"], tmp_path / "run", capsys)
    line = assert_unhealthy(result, "ann.checkpoint", "ann")
    assert "outputs are not finite" in line


def test_ann_at_chance_fails(tmp_path, capsys):
    """All-zero weights predict one class for every image: accuracy = that class's share."""

    def zero(model):
        for p in model.parameters():
            p.zero_()

    ckpt = checkpoint(tmp_path, zero)
    result = run_cli([*BASE, f"ann.checkpoint={ckpt}"], tmp_path / "run", capsys)
    line = assert_unhealthy(result, "ann.checkpoint", "ann")
    assert "at chance" in line and "health=false" in line
    assert "ann/test/acc" in result.record["metrics"]  # the measured accuracy is kept
    # health=false accepts the same model
    ok = run_cli([*BASE, f"ann.checkpoint={ckpt}", "health=false"], tmp_path / "ok", capsys)
    assert ok.code == 0 and ok.record["status"] == "ok"


def test_snn_at_chance_where_the_ann_is_not_fails(tmp_path, capsys, monkeypatch):
    """The check's wiring, without depending on any model's accuracy: the evaluator reports
    90 % for the ANN (T = 0) and 10 % for the SNN."""
    import adacal.pipeline as pipeline

    real = pipeline.evaluate

    def evaluate(cfg, net, datamodule, T, exit_thresholds=None, **kw):
        res = real(cfg, net, datamodule, T, exit_thresholds, **kw)
        key = f"acc_t{T or 1}"
        res[key] = 0.9 if T == 0 else 0.1
        return res

    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    ckpt = checkpoint(tmp_path)
    result = run_cli([*BASE, f"ann.checkpoint={ckpt}", "snn.T=[1,2]", "snn.anytime=[1]"],
                     tmp_path / "run", capsys)  # fmt: skip
    line = assert_unhealthy(result, "snn.T", "snn")
    assert "T=1: 10.0%, T=2: 10.0%" in line and "ANN scores 90.0%" in line
    record = result.record
    assert record["finished_T"] == [1, 2]  # every T's numbers are kept
    assert record["metrics"]["snn/test/acc_T2"] == 0.1


def test_chance_bound():
    from adacal import health

    assert health.chance_bound(10, 100) == pytest.approx(0.19)
    assert health.chance_bound(10, 10_000) == pytest.approx(0.109)
    assert health.at_chance(float("nan"), 10, 100) and health.at_chance(None, 10, 100)
    assert not health.at_chance(0.2, 10, 100)


def test_snn_check_needs_every_T_at_chance():
    from adacal import health
    from adacal.errors import HealthError

    metrics = {"ann/test/acc": 0.9, "snn/test/acc_T2": 0.1, "snn/test/acc_T8": 0.8}
    health.check_snn_accuracy(metrics, [2, 8], 10, 1000)  # T=8 works: no failure
    with pytest.raises(HealthError) as info:
        health.check_snn_accuracy({**metrics, "snn/test/acc_T8": 0.1}, [2, 8], 10, 1000)
    assert info.value.key == "snn.T"
    # an ANN at chance is reported by the ANN check, not blamed on the SNN
    health.check_snn_accuracy({**metrics, "ann/test/acc": 0.1}, [2, 8], 10, 1000)


def test_finite_loss_callback():
    from adacal import health
    from adacal.errors import HealthError

    class Trainer:
        current_epoch, global_step = 0, 7

    callback = health.FiniteLoss(lr=0.5)
    callback.on_train_batch_end(Trainer(), None, {"loss": torch.tensor(1.0)}, None, 0)
    with pytest.raises(HealthError) as info:
        callback.on_train_batch_end(Trainer(), None, torch.tensor(math.inf), None, 0)
    assert info.value.key == "ann.optim.lr" and "step 7" in info.value.detail


def test_finite_metrics():
    from adacal import health
    from adacal.errors import HealthError

    health.check_finite_metrics({"snn/test/acc_T2": 0.5, "snn/test/energy_uj_T2": 1.0}, [2], "acc")
    with pytest.raises(HealthError, match="energy_uj_T2"):
        health.check_finite_metrics({"snn/test/energy_uj_T2": math.nan}, [2], "acc")
