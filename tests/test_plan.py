"""The GPU plan (experiments/device/plan.py): the stage graph, the skip rule, and a --smoke run
end to end on a tiny CIFAR-like ImageFolder (CPU)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_plan_module():
    spec = importlib.util.spec_from_file_location("plan", ROOT / "experiments/device/plan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["plan"] = module
    spec.loader.exec_module(module)
    return module


plan = load_plan_module()


def fake_cifar(root: Path, train: int = 8, test: int = 4) -> Path:
    """An ImageFolder ``root/cifar10/{train,test}/<class>/<n>.png`` of random 32×32 images."""
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", train), ("test", test)):
        for c in CLASSES:
            folder = root / "cifar10" / split / c
            folder.mkdir(parents=True)
            for k in range(n):
                img = torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
                write_png(img, str(folder / f"{k}.png"))
    return root


def test_the_plan_file_parses_and_every_needs_names_an_earlier_training_stage() -> None:
    p = plan.load_plan()
    names = [s.name for s in p.stages]
    assert len(names) == len(set(names))
    for s in p.stages:
        if s.needs:
            assert names.index(s.needs) < names.index(s.name)
            assert p.stage(s.needs).checkpoint
        assert s.minutes <= 9  # a stage fits one short allocation


def test_pending_skips_done_stages_and_retrains_an_uncommitted_checkpoint(tmp_path: Path) -> None:
    p = plan.load_plan()
    results, ckpts = tmp_path / "results", tmp_path / "ckpt"
    ckpts.mkdir()

    def done(name: str) -> None:
        (results / name).mkdir(parents=True)
        (results / name / "metrics.json").write_text(json.dumps({"status": "ok"}))

    for name in ("train_c10_r20w", "c10_r20w_light", "train_c10_vgg16"):
        done(name)
    (ckpts / "cifar10_resnet20_wide.pt").write_bytes(b"x")
    todo = [s.name for s in plan.pending(p, results, ckpts)]
    assert "train_c10_r20w" not in todo and "c10_r20w_light" not in todo
    assert "c10_r20w_adafire" in todo
    # VGG-16's record is there but its checkpoint is not (never committed): a pending VGG
    # stage needs it, so the training stage runs again, before the stages that need it
    assert "train_c10_vgg16" in todo
    assert todo.index("train_c10_vgg16") < todo.index("c10_vgg16_light")
    for name in ("c10_vgg16_light", "c10_vgg16_adafire", "c10_vgg16_advanced"):
        done(name)
    assert "train_c10_vgg16" not in [s.name for s in plan.pending(p, results, ckpts)]
    (results / "c10_r20w_adafire").mkdir()
    (results / "c10_r20w_adafire" / "metrics.json").write_text(json.dumps({"status": "failed"}))
    assert "c10_r20w_adafire" in [s.name for s in plan.pending(p, results, ckpts)]


def test_unknown_stage_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        plan.main(["--list", "--only", "train_c10_r20w,no_such_stage"])
    assert err.value.code == 2
    assert "--only names no stage of plan.yaml: no_such_stage" in capsys.readouterr().err


def test_training_and_table_commands(tmp_path: Path) -> None:
    p = plan.load_plan()
    train = plan.command(p, p.stage("train_c10_r20w"), tmp_path / "run", tmp_path, smoke=False)
    assert "recipe=fast" in train and "ann.checkpoint=null" in train
    assert f"ann.export_to={tmp_path / 'cifar10_resnet20_wide.pt'}" in train
    table = plan.command(p, p.stage("c10_r20w_light"), tmp_path / "run", tmp_path, smoke=True)
    assert f"ann.checkpoint={tmp_path / 'cifar10_resnet20_wide.pt'}" in table
    assert table.index(p.table_T) < table.index("snn.T=[2]")  # smoke overrides come last
    assert "trainer=cpu" in table and "trainer=gpu" in table


def test_smoke_training_stage_runs_is_skipped_when_done_and_failures_are_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The training stage end to end on the CPU (tiny data, thin width); a second run finds
    nothing pending; a failing training stage leaves a failed record, no checkpoint, and
    skips the stage that needs it."""
    data = fake_cifar(tmp_path / "data")
    work = tmp_path / "smoke"
    base = ["--smoke", "--data", str(data), "--set", "architecture.width=thin"]
    assert plan.main([*base, "--work", str(work), "--only", "train_c10_r20w"]) == 0
    results = work / "results"
    status = json.loads((results / "plan_status.json").read_text())
    assert status["train_c10_r20w"]["status"] == "ok"
    assert (work / "checkpoints" / "cifar10_resnet20_wide.pt.sha256").is_file()
    assert plan.record_ok(results / "train_c10_r20w")
    assert not (results / "train_c10_r20w" / "ann.pt").exists()  # no weights in records
    capsys.readouterr()
    assert plan.main([*base, "--work", str(work), "--only", "train_c10_r20w"]) == 0
    assert "pending: nothing" in capsys.readouterr().out

    bad = tmp_path / "bad"
    only = ["--only", "train_c10_r20w,c10_r20w_light"]
    rc = plan.main([*base, "--work", str(bad), "--set", "ann.optim.lr=-1", *only])
    assert rc == 1
    status = json.loads((bad / "results" / "plan_status.json").read_text())
    assert status["train_c10_r20w"]["status"] == "failed"
    assert "ann.optim.lr" in status["train_c10_r20w"]["reason"]
    assert status["c10_r20w_light"] == {"status": "skipped", "reason": "train_c10_r20w failed"}
    assert not plan.record_ok(bad / "results" / "train_c10_r20w")
    assert not (bad / "checkpoints" / "cifar10_resnet20_wide.pt").exists()


@pytest.mark.slow
def test_smoke_table_stage_fills_a_rendered_cell(tmp_path: Path) -> None:
    """Training, then the light table stage, on the CPU; the rendered table has its cell."""
    data = fake_cifar(tmp_path / "data")
    work = tmp_path / "smoke"
    args = ["--smoke", "--work", str(work), "--data", str(data)]
    args += ["--set", "architecture.width=thin", "--set", "snn.batch_size=40"]
    assert plan.main([*args, "--only", "train_c10_r20w,c10_r20w_light"]) == 0
    results = work / "results"
    record = json.loads((results / "c10_r20w_light" / "metrics.json").read_text())
    assert record["status"] == "ok" and "snn/test/acc_T2" in record["metrics"]
    table = (results / "tables" / "cifar_classification.md").read_text()
    light = [r for r in table.splitlines() if "ResNet-20 SNN Calibration light | 2 |" in r]
    assert light and "| - |" not in light[0].split("|", 4)[3]
