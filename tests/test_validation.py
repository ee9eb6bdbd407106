"""Bad values are refused before any work: through run.py, one line naming the key, exit
status 2, no success record, nothing trained (issue 11, "Validation before any work")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import TINY_DATA, error_lines, run_cli  # noqa: E402
from adacal.checkpoint import save_state_dict  # noqa: E402
from adacal.errors import ConfigError  # noqa: E402

TINY = ["trainer.max_epochs=1", *TINY_DATA, "snn.T=[2]", "logger=none", "health=false"]


def assert_refused(result, run_dir: Path, key: str) -> str:
    """Exit 2, exactly one ``adacal:`` line naming ``key``, no traceback, no "ok" record, no
    training output. Returns the line."""
    lines = error_lines(result.stderr)
    assert result.code == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"adacal: configuration error: {key}: "), lines[0]
    assert "Traceback" not in result.stderr
    assert result.record is None or result.record["status"] == "failed"
    if result.record is not None:
        assert key in result.record["error"]
    assert not (run_dir / "ann.pt").exists()
    assert not (run_dir / "lightning_checkpoints").exists()
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "key", "hint"),
    [
        (["snn.T=[2.5]"], "snn.T", "not an integer"),
        (["snn.T=abc"], "snn.T", "not an integer"),
        (["snn.T=[2,2]"], "snn.T", "snn.T=[2]"),
        (["snn.T=[4,2,4]"], "snn.T", "snn.T=[4,2]"),
        (["snn.anytime=[1.5]"], "snn.anytime", "integers"),
        (["neuron=burst", "neuron.phi=2.5"], "neuron.phi", "not an integer"),
        (["neuron=adafire", "neuron.phi_init=8.5"], "neuron.phi_init", "not an integer"),
        (["seed=abc"], "seed", "not an integer"),
        (["seed=-1"], "seed", ">= 0"),
        (["snn.batch_size=0"], "snn.batch_size", ">= 1"),
        (["snn.chunk=0"], "snn.chunk", ">= 1"),
        (["calibration.batch_size=0"], "calibration.batch_size", ">= 1"),
        (["calibration.num_samples=2.5"], "calibration.num_samples", "not an integer"),
        (["search.sub_batch=0"], "search.sub_batch", ">= 1"),
        (["inference=iat", "inference.batch_size=0"], "inference.batch_size", ">= 1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs", "untrained"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs", "forever"),
        (["trainer.max_epochs=1.5"], "trainer.max_epochs", ">= 1"),
        (["trainer.max_steps=0"], "trainer.max_steps", "-1"),
        (["energy.burst=bits"], "energy.burst", "energy.burst=messages"),
    ],
)
def test_bad_value_refused_before_any_work(tmp_path, capsys, overrides, key, hint):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, *overrides], run_dir, capsys)
    line = assert_refused(result, run_dir, key)
    assert hint in line


def test_dataset_errors_name_their_key_and_exit_2(tmp_path, capsys):
    """dataset.* values checked in the datamodule's constructor: was exit 1 (instantiate
    wrapped the ConfigError in an InstantiationException)."""
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "dataset.test_fraction=2"], run_dir, capsys)
    line = assert_refused(result, run_dir, "dataset.test_fraction")
    assert "(0, 1)" in line


def test_calibration_size_checked_before_training(tmp_path, capsys):
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "calibration.num_samples=301"], run_dir, capsys)
    line = assert_refused(result, run_dir, "calibration.num_samples")
    assert "1..300" in line and "dataset.train_limit=300" in line


def test_huge_T_refused_by_its_memory_estimate(tmp_path, capsys):
    """snn.T=[100000] tried to allocate ~1.6 TB after training; now refused before it."""
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "snn.T=[100000]", "calibration.num_samples=256"], run_dir, capsys)
    line = assert_refused(result, run_dir, "snn.T")
    assert "T=100000 needs about" in line and "lower snn.T or calibration.num_samples" in line


def test_memory_estimate_against_given_free_memory(compose_config):
    from adacal.validate import calibration_bytes, check_memory

    cfg = compose_config(["snn.T=[2,16]", "calibration.num_samples=256"])
    need = calibration_bytes(256, 16, [100, 4096])
    assert need == 256 * 16 * 4096 * 4
    check_memory(cfg, [100, 4096], torch.device("cpu"), free=need)  # fits exactly
    with pytest.raises(ConfigError) as info:
        check_memory(cfg, [100, 4096], torch.device("cpu"), free=need - 1)
    assert info.value.key == "snn.T" and "T=16" in info.value.detail
    # no calibration steps: memory does not grow with T
    none = compose_config(["calibration=none", "snn.T=[100000]"])
    check_memory(none, [4096], torch.device("cpu"), free=1)


def test_empty_checkpoint_is_a_config_error(tmp_path, capsys):
    """A 0-byte checkpoint (with a matching sha256) crashed the error handler (IndexError)."""
    ckpt = tmp_path / "empty.pt"
    ckpt.write_bytes(b"")
    (tmp_path / "empty.pt.sha256").write_text(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty.pt\n"
    )
    run_dir = tmp_path / "run"
    line = assert_refused(
        run_cli([*TINY, f"ann.checkpoint={ckpt}"], run_dir, capsys), run_dir, "ann.checkpoint"
    )
    assert str(ckpt) in line and "not a plain tensor state dict" in line


def test_integer_helpers():
    from adacal.validate import integer, integer_list

    assert integer("k", 3, 1) == 3
    assert integer("k", None, 1, nullable=True) is None
    for bad in (2.0, 2.5, "3", True, None):
        with pytest.raises(ConfigError):
            integer("k", bad, 1)
    assert integer_list("snn.T", 4, "[4]") == [4]
    with pytest.raises(ConfigError, match="appears more than once"):
        integer_list("snn.T", [2, 2], "[2]")
    with pytest.raises(ConfigError, match="empty"):
        integer_list("snn.T", [], "[2]")


def test_good_checkpoint_still_runs(tmp_path, capsys):
    """The checks refuse nothing valid: a run from a checkpoint ends "ok" (exit 0)."""
    from adacal.models import small_cnn

    torch.manual_seed(0)
    ckpt = tmp_path / "ann.pt"
    save_state_dict(small_cnn(10, in_channels=1, width=8), ckpt, "test")
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, f"ann.checkpoint={ckpt}", "snn.compare_baseline=false"], run_dir,
                     capsys)  # fmt: skip
    assert result.code == 0, result.stderr[-2000:]
    assert result.record["status"] == "ok" and result.record["finished_T"] == [2]


def test_bad_value_through_a_real_process(repo_root, tmp_path):
    """The same through a fresh ``python run.py`` process (exit status as the shell sees it)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "run.py", *TINY, "seed=abc", f"hydra.run.dir={run_dir}"],
        cwd=repo_root,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == [
        "adacal: configuration error: seed: 'abc' is not an integer; pass seed=<an integer >= 0>"
    ]


# -- image folder cache (CIFAR, ImageNet layouts) -------------------------------------------


def _png(path: Path, value: int) -> None:
    """A 4x4 RGB PNG, stored uncompressed: the same size in bytes whatever ``value``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path, compress_level=0)


def test_corrupt_image_is_named(tmp_path):
    from adacal.data.cache import build_image_cache

    _png(tmp_path / "train" / "cat" / "a.png", 10)
    bad = tmp_path / "train" / "cat" / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ConfigError) as info:
        build_image_cache(tmp_path / "train", tmp_path)
    assert info.value.key == "dataset.root" and str(bad) in info.value.detail


def test_cache_sees_an_in_place_edit_of_the_same_size(tmp_path):
    from adacal.data.cache import build_image_cache

    image = tmp_path / "train" / "cat" / "a.png"
    _png(image, 10)
    assert int(build_image_cache(tmp_path / "train", tmp_path).images.max()) == 10
    size, mtime = image.stat().st_size, image.stat().st_mtime_ns
    _png(image, 200)
    os.utime(image, ns=(mtime + 10**9, mtime + 10**9))  # a later edit, whatever the clock
    assert image.stat().st_size == size
    assert int(build_image_cache(tmp_path / "train", tmp_path).images.max()) == 200


def test_unreadable_cache_file_is_named_and_rebuilt(tmp_path, caplog):
    from adacal.data.cache import build_image_cache

    _png(tmp_path / "train" / "cat" / "a.png", 10)
    build_image_cache(tmp_path / "train", tmp_path)
    (cache,) = tmp_path.glob(".adacal_cache_train_*.pt")
    cache.write_bytes(b"truncated")
    caplog.set_level("WARNING")
    assert int(build_image_cache(tmp_path / "train", tmp_path).images.max()) == 10
    assert str(cache) in caplog.text and "decoding again" in caplog.text
    assert int(build_image_cache(tmp_path / "train", tmp_path).images.max()) == 10  # rewritten
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- experiments/render.py ------------------------------------------------------------------


def _render(repo_root, capsys, *args) -> tuple[int, str, str]:
    """``experiments/render.py *args`` in this process: (exit status, stdout, stderr)."""
    import runpy

    main = runpy.run_path(str(repo_root / "experiments" / "render.py"))["main"]
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_render_counts_a_non_record_metrics_json_as_failed(repo_root, tmp_path, capsys):
    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text("[]\n")
    code, out, err = _render(repo_root, capsys, "ablation_digits", tmp_path / "sweep", "--no-plots")
    assert code == 0, err[-2000:]
    assert "a JSON list, not a run record" in out


def test_render_out_pointing_to_a_file(repo_root, tmp_path, capsys):
    (tmp_path / "sweep").mkdir()
    target = tmp_path / "table.md"
    target.write_text("keep me")
    code, _, err = _render(
        repo_root, capsys, "ablation_digits", tmp_path / "sweep", "--out", target
    )
    assert code == 2
    assert err.strip() == f"render: --out {target} is a file; pass a folder (created if missing)"
    assert target.read_text() == "keep me"
