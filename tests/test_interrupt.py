"""Interrupts and failures keep what finished (issue 11, "Records that keep what finished"):
the failed record holds every finished T, says which stage and T were running and why it
stopped (``interrupted: SIGINT``); SIGINT / SIGTERM exit without a traceback; checkpoint and
record writes stay atomic on a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import TINY_DATA, error_lines, run_cli  # noqa: E402
from adacal.checkpoint import save_state_dict  # noqa: E402
from adacal.models import small_cnn  # noqa: E402
from adacal.reporting import read_metrics  # noqa: E402
from adacal.reporting.metrics_file import write_json_atomic  # noqa: E402

BASE = [*TINY_DATA, "logger=none", "snn.compare_baseline=false", "health=false"]

needs_default_handlers = pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="this process's SIGINT/SIGTERM handlers are not Python's defaults",
)


@pytest.fixture
def ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "ckpt" / "ann.pt"
    save_state_dict(small_cnn(10, in_channels=1, width=8), path, "test")
    return path


def assert_interrupted(result, name: str, stage: str, T: int | None, finished: list[int]):
    assert result.code == 128 + getattr(signal, name), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    where = f"{stage} stage" + (f" at T={T}" if T is not None else "")
    assert error_lines(result.stderr) == [
        f"adacal: interrupted by {name} during the {where}; metrics.json keeps every finished T"
    ]
    record = result.record
    assert record["status"] == "failed"
    assert record["error"] == f"interrupted: {name}" and record["interrupted"] == name
    assert record["stopped_at"] == ({"stage": stage, "T": T} if T else {"stage": stage})
    assert record["finished_T"] == finished
    assert record["config"]["snn"]["T"]  # the resolved config is kept for the tables
    return record


@needs_default_handlers
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_signal_after_the_first_T_keeps_it(tmp_path, capsys, monkeypatch, ckpt, name):
    """The signal arrives as T=4 starts, T=2's record written: the failed record keeps every
    metric of the running record (was: 32 metrics -> 3, error "KeyboardInterrupt: ")."""
    from adacal.reporting.run_record import RunRecord

    running: dict = {}
    start = RunRecord.start

    def start_then_signal(self, stage, T=None):
        start(self, stage, T)
        if T == 4:  # T=2 has finished and its record is on disk; T=4 starts
            running.update(read_metrics(self.out_dir))
            os.kill(os.getpid(), getattr(signal, name))

    monkeypatch.setattr(RunRecord, "start", start_then_signal)
    run_dir = tmp_path / "run"
    result = run_cli([*BASE, f"ann.checkpoint={ckpt}", "snn.T=[2,4]"], run_dir, capsys)
    record = assert_interrupted(result, name, "snn", 4, [2])
    assert running["status"] == "running" and len(running["metrics"]) > 10
    assert record["metrics"] == running["metrics"]  # nothing that finished is lost
    assert not (run_dir / "results.md").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@needs_default_handlers
def test_sigint_while_training_is_recorded_as_an_interrupt(tmp_path, capsys, monkeypatch):
    """Lightning turns Ctrl-C during fit into sys.exit(1) (recorded as "SystemExit: 1");
    the run's own handler keeps the signal's name."""
    from adacal import health

    def interrupt(self, trainer, *args):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(health.FiniteLoss, "on_train_batch_end", interrupt)
    run_dir = tmp_path / "run"
    result = run_cli([*BASE, "trainer.max_epochs=1", "snn.T=[2]"], run_dir, capsys)
    assert_interrupted(result, "SIGINT", "ann", None, [])
    assert not (run_dir / "ann.pt").exists()


def test_sigint_to_a_real_process(repo_root, tmp_path, ckpt):
    """``python run.py`` as a user runs it: SIGINT once T=2's record is on disk."""
    run_dir = tmp_path / "run"
    args = [*BASE, f"ann.checkpoint={ckpt}", "snn.T=[2,4]", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=repo_root,
        env={**os.environ, "WANDB_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT, and children inherit that: undo it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    path = run_dir / "metrics.json"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        # T=2 finished (a running record is also written after each test pass inside a T)
        if path.is_file() and read_metrics(path).get("finished_T") == [2]:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=120)
    record = read_metrics(path)
    if record["status"] == "ok":
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert record["interrupted"] == "SIGINT" and record["finished_T"] == [2]
    assert record["stopped_at"] == {"stage": "snn", "T": 4}
    assert "snn/test/acc_T2" in record["metrics"]


def test_error_messages_name_what_happened():
    from adacal.errors import Interrupted
    from adacal.reporting.metrics_file import error_message

    assert error_message(Interrupted(signal.SIGTERM)) == "interrupted: SIGTERM"
    assert error_message(KeyboardInterrupt()) == "interrupted: SIGINT"
    assert error_message(SystemExit(1)) == "exited with status 1"
    assert error_message(RuntimeError()) == "RuntimeError"
    assert error_message(ValueError("bad")) == "ValueError: bad"
    assert Interrupted(signal.SIGINT).exit_status == 130


def test_other_failures_keep_finished_T_too(tmp_path, capsys, monkeypatch, ckpt):
    """Any exception after T=2 (here a crash in T=4's evaluation) keeps T=2 and names T=4."""
    import adacal.pipeline as pipeline

    real = pipeline.evaluate

    def evaluate(cfg, net, datamodule, T, exit_thresholds=None, **kw):
        if T == 4:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(cfg, net, datamodule, T, exit_thresholds, **kw)

    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    with pytest.raises(RuntimeError):
        pipeline.run(_compose(tmp_path, [*BASE, f"ann.checkpoint={ckpt}", "snn.T=[2,4]"]))
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "failed" and record["finished_T"] == [2]
    assert record["stopped_at"] == {"stage": "snn", "T": 4}
    assert record["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert "snn/test/acc_T2" in record["metrics"] and record["config"]


def test_a_failure_during_a_T_keeps_its_finished_test_passes(tmp_path, monkeypatch, ckpt):
    """A T runs several test passes (here the AdaFire network, then its IF baseline); a crash
    in the second keeps the first and the search record: a T = 16 frontier job killed after
    five of its six passes used to lose all five."""
    import adacal.pipeline as pipeline

    real, calls, running = pipeline.evaluate, [], {}

    def evaluate(cfg, net, datamodule, T, exit_thresholds=None, **kw):
        calls.append(T)
        if calls.count(2) == 2:  # the baseline's pass, after AdaFire's (T = 0: the ANN)
            running.update(read_metrics(tmp_path / "run"))
            raise MemoryError("killed (simulated)")
        return real(cfg, net, datamodule, T, exit_thresholds, **kw)

    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    overrides = [*BASE, f"ann.checkpoint={ckpt}", "snn.T=[2]", "neuron=adafire"]
    with pytest.raises(MemoryError):
        pipeline.run(_compose(tmp_path, [*overrides, "snn.compare_baseline=true"]))
    assert running["status"] == "running" and running["partial_T"] == 2
    assert running["finished_T"] == []
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "failed" and record["finished_T"] == []
    assert record["stopped_at"] == {"stage": "snn", "T": 2}
    kept = record["metrics"]
    assert kept == running["metrics"] and 0 <= kept["snn/test/acc_T2"] <= 1
    assert kept["snn/test/energy_uj_T2"] > 0 and "snn/time/evaluation_s_T2" in kept
    assert not any("baseline" in k for k in kept)  # the pass that crashed left nothing
    search = json.loads((tmp_path / "run" / "adaptive_T2.json").read_text())
    sites = [k for k in kept if k.startswith("snn/test/site") and k.endswith("_rate_T2")]
    assert len(search["adafire"]["phi"]) == len(sites) > 0  # one φ per neuron site


def _compose(tmp_path, overrides):
    from hydra import compose, initialize_config_dir

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        return compose(
            "config",
            [f"paths.root_dir={root}", f"paths.output_dir={tmp_path / 'run'}", *overrides],
        )


# -- atomic writes on a full disk ---------------------------------------------------------


def _disk_full_after(n: int):
    """A ``torch.save`` stand-in that writes ``n`` bytes, then fails like a full disk."""

    def save(obj, f, *args, **kwargs):
        f.write(b"x" * n)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_state_dict_save_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    model = small_cnn(10, in_channels=1, width=8)
    path = tmp_path / "ann.pt"
    digest = save_state_dict(model, path, "first")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _disk_full_after(100))
    with pytest.raises(OSError, match="No space left"):
        save_state_dict(model, path, "second")
    assert path.read_bytes() == before  # the complete earlier checkpoint, not a truncated one
    assert (tmp_path / "ann.pt.sha256").read_text().split()[0] == digest
    assert _leftovers(tmp_path) == []
    with pytest.raises(OSError):
        save_state_dict(model, tmp_path / "new.pt", "x")
    assert not (tmp_path / "new.pt").exists() and _leftovers(tmp_path) == []


def test_lightning_checkpoint_on_a_full_disk_is_never_truncated(tmp_path, monkeypatch):
    from adacal.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "lightning_checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, path)
    assert io.load_checkpoint(path)["epoch"] == 0
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _disk_full_after(10))
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 1}, path)
    assert path.read_bytes() == before and _leftovers(path.parent) == []


def test_training_writes_its_checkpoints_atomically(tmp_path, monkeypatch):
    """The pipeline's training trainer saves last.ckpt through the atomic writer (Lightning's
    own goes through fsspec, which may copy a temporary file into place)."""
    import adacal.pipeline as pipeline
    from adacal.checkpoint_io import AtomicCheckpointIO

    saved = []
    save = AtomicCheckpointIO.save_checkpoint

    def counting(self, checkpoint, path, storage_options=None):
        saved.append(Path(path).name)
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", counting)
    pipeline.run(_compose(tmp_path, [*BASE, "stages=[ann]", "trainer.max_epochs=1",
                                     "ann.evaluate=false"]))  # fmt: skip
    assert "last.ckpt" in saved
    assert (tmp_path / "run" / "lightning_checkpoints" / "last.ckpt").is_file()
    assert _leftovers(tmp_path / "run" / "lightning_checkpoints") == []


def test_json_record_on_a_full_disk_keeps_the_old_record(tmp_path, monkeypatch):
    path = write_json_atomic(tmp_path / "metrics.json", {"status": "running"})

    def dump(obj, f, *args, **kwargs):
        f.write('{"status": "fa')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", dump)
    with pytest.raises(OSError):
        write_json_atomic(path, {"status": "failed"})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert _leftovers(tmp_path) == []


def test_write_atomic_removes_its_temporary_file_on_any_error(tmp_path):
    from adacal.checkpoint import write_atomic

    def fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "x.bin", fail)
    assert list(tmp_path.iterdir()) == []
