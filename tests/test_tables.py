"""Paper tables as data: specs, the renderer, plots, the Hydra callback, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from adacal import keys
from adacal.adaptive.compression import budget_name
from adacal.reporting.metrics_file import write_failure, write_metrics
from adacal.reporting.plots import pareto_front
from adacal.reporting.records import RunRecord, find_runs, matches, split_record, wandb_runs
from adacal.reporting.render import render
from adacal.reporting.spec import SpecError, all_specs, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- the committed specs --------------------------------------------------------------------


def test_every_table_in_scope_has_a_spec():
    names = {s.name for s in all_specs()}
    assert {
        "cifar_classification",
        "imagenet_classification",
        "energy",
        "ablation_neuron",
        "ablation_ssc",
        "ablation_iat",
        "voc2012_segmentation",
        "camvid_local",
        "cifar10_local",
    } <= names
    for spec in all_specs():
        assert spec.state in ("local", "gpu") and spec.hardware and spec.gpu_hours is not None


def test_reference_numbers_are_the_published_ones():
    """The cited numbers, exactly as published (SNN Calibration README; QCFS; the abstract)."""
    spec = load_spec("cifar_classification")
    refs = {(r.id, ref.T, ref.source): ref.value for r in spec.rows for ref in r.references}
    assert refs[("c10_vgg16_ann", None, "snn_calibration")] == 95.76
    assert refs[("c10_vgg16_light", 32, "snn_calibration")] == 93.30
    assert refs[("c10_vgg16_advanced", 32, "snn_calibration")] == 93.65
    assert refs[("c10_vgg16_advanced", 32, "qcfs")] == 93.71
    assert refs[("c10_vgg16_advanced", 64, "qcfs")] == 95.14
    assert refs[("c10_r20_ann", None, "snn_calibration")] == 95.68
    assert refs[("c10_r20_light", 32, "snn_calibration")] == 93.89
    assert refs[("c10_r20_advanced", 32, "snn_calibration")] == 94.33
    assert refs[("c100_vgg16_ann", None, "snn_calibration")] == 77.98
    assert refs[("c100_vgg16_light", 32, "snn_calibration")] == 65.26
    assert refs[("c100_vgg16_advanced", 32, "snn_calibration")] == 70.91
    assert refs[("c100_vgg16_advanced", 32, "qcfs")] == 73.55
    assert refs[("c100_vgg16_advanced", 64, "qcfs")] == 76.64
    assert refs[("c100_r20_ann", None, "snn_calibration")] == 76.52
    assert refs[("c100_r20_light", 32, "snn_calibration")] == 73.89
    assert refs[("c100_r20_advanced", 32, "snn_calibration")] == 74.48
    energy = load_spec("energy")
    savings = {r.id: ref.value for r in energy.rows for ref in r.references}
    assert savings == {"c10_full": 70.1, "c100_full": 60.3, "in_full": 43.1}
    assert all(ref.column == "saving" for r in energy.rows for ref in r.references)


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_every_sweep_combination_composes_and_fills_the_rows(spec, compose_config, tmp_path):
    """Each job of each sweep composes; every row is filled by some job of the spec."""
    entries = []
    for job in spec.jobs:
        for combo in job.combinations():
            launcher = [o for o in combo if o.startswith("hydra/")]
            if launcher:  # a launcher preset composes with the job (hydra node kept)
                assert compose_config(combo, output_dir=tmp_path, hydra=True).hydra.launcher
            cfg = compose_config([o for o in combo if o not in launcher], output_dir=tmp_path)
            assert cfg.experiment_name == job.experiment  # file name == experiment_name
            config = OmegaConf.to_container(cfg, resolve=True)
            metrics = {}
            if config["compression"].get("compare_uncompressed") and config["compression"].get(
                "_target_"
            ):
                metrics["snn/uncompressed/acc_T4"] = 0.5
            if config["inference"].get("compare_full") and config["inference"].get("_target_"):
                metrics["snn/full/acc_T4"] = 0.5
                for point in instantiate(cfg.inference).points():  # replayed exit policies
                    metrics[keys.key(keys.replay(point[0]), "acc", 4)] = 0.5
            if config["compression"].get("_target_"):  # further SSC budgets of the same search
                for rho in config["compression"].get("frontier") or []:
                    metrics[keys.key(keys.budget(budget_name(rho)), "acc", 4)] = 0.5
            entries += split_record(RunRecord(tmp_path, "ok", config, metrics))
    for row in spec.rows:
        assert any(matches(e, row.select, row.exclude) for e in entries), (
            f"{spec.name}: no job of the spec fills row {row.id}"
        )


# --- the renderer on fabricated sweep folders -----------------------------------------------

SPEC = {
    "title": "Fabricated",
    "state": "local",
    "hardware": "CPU",
    "gpu_hours": 0,
    "metric": "acc",
    "timesteps": [4, 8],
    "columns": ["score", "energy_uj", "saving"],
    "baseline": "if",
    "jobs": [{"experiment": "digits_small_cnn", "sweep": {"method": ["if", "burst", "adafire"]}}],
    "sources": {"paper": "A paper, Table 1"},
    "rows": [
        {"id": "ann", "label": "ANN", "ann": True, "select": {"method": "if"}},
        {
            "id": "if",
            "label": "IF",
            "select": {"method": "if"},
            "references": [{"T": 8, "value": 80.0, "source": "paper", "note": "quoted at T=8"}],
        },
        {"id": "burst", "label": "burst", "select": {"method": "burst φ=4"}},
        {"id": "adafire", "label": "AdaFire", "select": {"method": "adafire"}},
    ],
}


def _config(method: str, seed: int) -> dict:
    neuron = {"if": {"name": "if"}, "burst": {"name": "burst", "phi": 4}}[method]
    return {
        "experiment_name": "digits_small_cnn",
        "seed": seed,
        "neuron": neuron,
        "compression": {"name": "none"},
        "inference": {"name": "fixed"},
    }


def _job(root: Path, num: int, method: str, seed: int) -> Path:
    folder = root / str(num)
    (folder / ".hydra").mkdir(parents=True)
    overrides = ["experiment=digits_small_cnn", f"method={method}", f"seed={seed}"]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return folder


@pytest.fixture()
def sweep(tmp_path) -> Path:
    """Two seeds of IF and burst (one burst seed stopped after T=4), a crashed AdaFire job."""
    root = tmp_path / "sweep"
    values = {  # (method, seed): (acc T4, acc T8, energy T4, energy T8)
        ("if", 0): (0.50, 0.80, 10.0, 20.0),
        ("if", 1): (0.60, 0.90, 10.0, 20.0),
        ("burst", 0): (0.70, 0.85, 20.0, 40.0),
        ("burst", 1): (0.74, None, 30.0, None),
    }
    for num, ((method, seed), (a4, a8, e4, e8)) in enumerate(values.items()):
        metrics = {"ann/test/acc": 0.95, "ann/energy_uj": 100.0}
        metrics.update({"snn/test/acc_T4": a4, "snn/test/energy_uj_T4": e4})
        if a8 is not None:
            metrics.update({"snn/test/acc_T8": a8, "snn/test/energy_uj_T8": e8})
        status = "ok" if a8 is not None else "running"
        write_metrics(_job(root, num, method, seed), metrics, _config(method, seed), status=status)
    crashed = _job(root, 4, "adafire", 0)
    write_failure(crashed, RuntimeError("out of memory"), config={"neuron": {"name": "adafire"}})
    return root


EXPECTED_MD = """\
| row | T | top-1 (%) | reference | Δ | energy/image (µJ) | saving vs baseline (%) | seeds |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| ANN | - | 95.00 ± 0.00 | not published | - | 100.00 ± 0.00 | - | 2 |
| IF | 4 | 55.00 ± 7.07 | not published | - | 10.00 ± 0.00 | 0.0 ± 0.0 | 2 |
| burst | 4 | 72.00 ± 2.83† | not published | - | 25.00 ± 7.07† | -150.0 ± 70.7† | 2 |
| AdaFire | 4 | - | not published | - | - | - | 0 |
| IF | 8 | 85.00 ± 7.07 | 80.00 [1] | +5.00 | 20.00 ± 0.00 | 0.0 ± 0.0 | 2 |
| burst | 8 | 85.00 | not published | - | 40.00 | -100.0 | 1 |
| AdaFire | 8 | - | not published | - | - | - | 0 |
"""

EXPECTED_CSV = """\
row_id,row,T,seeds,score,score_std,score_reference,score_delta,score_source,energy_uj,energy_uj_std,saving,saving_std
ann,ANN,,2,95,0,,,,100,0,,
if,IF,4,2,55,7.07107,,,,10,0,0,0
burst,burst,4,2,72,2.82843,,,,25,7.07107,-150,70.7107
adafire,AdaFire,4,0,,,,,,,,,
if,IF,8,2,85,7.07107,80,5,"A paper, Table 1",20,0,0,0
burst,burst,8,1,85,,,,,40,,-100,
adafire,AdaFire,8,0,,,,,,,,,
"""


def test_renderer_exact_markdown_and_csv(sweep, tmp_path):
    spec = parse_spec(SPEC, "fabricated")
    out = render(spec, [sweep], tmp_path / "out", plots=False)
    md = out.markdown
    assert EXPECTED_MD in md
    assert out.csv == EXPECTED_CSV
    assert (tmp_path / "out" / "fabricated.csv").read_text() == EXPECTED_CSV
    assert "- [1] A paper, Table 1" in md and "- [1] note: quoted at T=8" in md
    assert "Runs: 5 found (1 failed, 1 running)." in md
    assert (
        "- `sweep/4` (experiment=digits_small_cnn method=adafire seed=0): "
        "failed: RuntimeError: out of memory" in md
    )
    assert (
        "- `sweep/3` (experiment=digits_small_cnn method=burst seed=1): "
        "incomplete (status running: still running, or killed; T done: 4)" in md
    )
    assert "Empty cells (no run gave a value): AdaFire at T=4; AdaFire at T=8." in md


def test_a_run_stopped_inside_a_T_lists_it_apart_from_the_finished_ones(tmp_path):
    """A record keeps the finished test passes of the T it stopped in: the T counts as
    measured (its cells come from it) but the run line says it did not finish."""
    from adacal.reporting.records import read_run
    from adacal.reporting.render import _run_line

    metrics = {"snn/test/acc_T4": 0.5, "snn/test/acc_T8": 0.6, "snn/budget/rho1.1/acc_T8": 0.55}
    error = RuntimeError("out of memory")
    write_failure(tmp_path / "a", error, metrics=metrics, finished_T=[4])
    running = {"finished_T": [4], "partial_T": 8}
    write_metrics(tmp_path / "b", metrics, {}, extra=running, status="running")
    write_metrics(tmp_path / "c", metrics, {}, status="running")  # no finished_T: older records
    a, b, c = (read_run(tmp_path / name) for name in "abc")
    assert a.timesteps() == b.timesteps() == c.timesteps() == [4, 8]
    assert a.finished_T == b.finished_T == (4,) and c.finished_T is None
    assert a.partial_timesteps() == b.partial_timesteps() == [8] and c.partial_timesteps() == []
    kept = "T done: 4; stopped inside T = 8, its finished passes kept"
    assert f"failed: RuntimeError: out of memory ({kept})" in _run_line(a, [tmp_path])
    assert f"killed; {kept})" in _run_line(b, [tmp_path])
    assert _run_line(c, [tmp_path]).endswith("T done: 4, 8)")
    # stopped after the budget passes of T = 8, before its main pass: still a partial T
    budget_only = {"snn/test/acc_T4": 0.5, "snn/budget/rho1.1/acc_T8": 0.55}
    write_failure(tmp_path / "d", error, metrics=budget_only, finished_T=[4])
    d = read_run(tmp_path / "d")
    assert d.timesteps() == [4] and d.partial_timesteps() == [8]
    assert f"({kept})" in _run_line(d, [tmp_path])


def test_mean_and_std_over_seeds(sweep):
    """mean = Σv/n, std = sqrt(Σ(v − mean)²/(n − 1)) per cell, over the seeds that ran."""
    out = render(parse_spec(SPEC, "fabricated"), [sweep], None)
    burst4 = next(line for line in out.lines if line.row.id == "burst" and line.T == 4)
    assert burst4.cells["score"].values == pytest.approx((70.0, 74.0))
    assert burst4.cells["score"].mean == pytest.approx(72.0)
    assert burst4.cells["score"].std == pytest.approx(
        math.sqrt(((70 - 72) ** 2 + (74 - 72) ** 2) / 1)
    )
    # saving per seed against the baseline row's energy of the same seed: 1 − 20/10, 1 − 30/10
    assert burst4.cells["saving"].values == pytest.approx((-100.0, -200.0))


def test_missing_job_folder_and_unlaunched_jobs_are_listed(sweep):
    _job(sweep, 5, "adafire", 1)  # a job folder whose run never wrote metrics.json
    spec = parse_spec(
        {
            **SPEC,
            "jobs": [
                {
                    "experiment": "digits_small_cnn",
                    "sweep": {"method": ["if", "adafire"], "seed": [0, 1, 2]},
                }
            ],
        },
        "fabricated",
    )
    md = render(spec, [sweep], None).markdown
    assert (
        "- `sweep/5` (experiment=digits_small_cnn method=adafire seed=1): missing: no metrics.json"
        in md
    )
    assert "Sweep jobs with no run folder:" in md
    for missing in ("method=if seed=2", "method=adafire seed=2"):
        assert f"- `experiment=digits_small_cnn {missing}`" in md
    assert "method=if seed=0`" not in md
    # Hydra records `false` as `False` and lists without spaces: still the same job
    spec = parse_spec(
        {
            **SPEC,
            "jobs": [
                {
                    "experiment": "digits_small_cnn",
                    "extra": ["snn.compare_baseline=false"],
                    "sweep": {"method": ["if"], "seed": [0]},
                }
            ],
        },
        "fabricated",
    )
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(
            ["experiment=digits_small_cnn", "snn.compare_baseline=False", "method=if", "seed=0"]
        )
    )
    assert "Sweep jobs with no run folder" not in render(spec, [sweep], None).markdown


def test_duplicate_runs_of_one_seed_are_reported(sweep):
    folder = _job(sweep, 9, "if", 0)
    metrics = {"ann/test/acc": 0.95, "snn/test/acc_T4": 0.3, "snn/test/energy_uj_T4": 10.0}
    write_metrics(folder, metrics, _config("if", 0))
    out = render(parse_spec(SPEC, "fabricated"), [sweep], None)
    if4 = next(line for line in out.lines if line.row.id == "if" and line.T == 4)
    assert if4.cells["score"].values == pytest.approx((30.0, 60.0))  # the later folder (9) wins
    assert "Cells given by more than one run of the same seed" in out.markdown
    assert "IF at T=4: `0`, `9`" in out.markdown


def test_sub_records_become_rows_and_exclude_filters():
    config = {
        "neuron": {"name": "adafire", "cost": "sops"},
        "compression": {"name": "ssc"},
        "inference": {"name": "iat"},
    }
    metrics = {"snn/uncompressed/acc_T4": 0.1, "snn/full/acc_T4": 0.2, "snn/test/acc_T4": 0.3}
    entries = split_record(RunRecord(Path("r"), "ok", config, metrics))
    assert [(e.label, e.metrics["snn/test/acc_T4"]) for e in entries] == [
        ("adafire", 0.1),
        ("adafire + ssc", 0.2),
        ("adafire + ssc + iat", 0.3),
    ]
    assert matches(entries[0], {"method": "adafire"})
    assert not matches(entries[0], {"method": "adafire"}, exclude={"neuron.cost": "sops"})
    assert matches(entries[0], {"method": ["if", "adafire"], "neuron.cost": "sops"})
    assert not matches(entries[0], {"calibration.name": "light"})  # absent key never matches


def test_pareto_front():
    points = [(10.0, 50.0), (20.0, 70.0), (15.0, 40.0), (30.0, 70.0), (40.0, 90.0), (20.0, 60.0)]
    assert pareto_front(points) == [(10.0, 50.0), (20.0, 70.0), (40.0, 90.0)]


def test_plots_are_png(sweep, tmp_path):
    spec = parse_spec(SPEC, "fabricated")
    out = render(spec, [sweep], tmp_path / "out")
    assert {"score_vs_T", "pareto"} <= set(out.files)
    for kind in ("score_vs_T", "pareto"):
        path = out.files[kind]
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.verify()
            assert image.size[0] > 300 and image.size[1] > 200


def test_wandb_group_runs_become_records():
    class FakeRun:
        def __init__(self, rid, state, acc):
            self.id, self.state = rid, state
            self.config = {"neuron": {"name": "if"}, "seed": 0, "_wandb": {}}
            self.summary = {"snn/test/acc_T4": acc, "_step": 3}

    class FakeApi:
        def runs(self, project, filters):
            assert (project, filters) == ("me/adacal", {"group": "g"})
            return [FakeRun("a", "finished", 0.5), FakeRun("b", "crashed", 0.1)]

    a, b = wandb_runs("me/adacal", "g", api=FakeApi())
    assert (a.status, a.metrics, a.seed) == ("ok", {"snn/test/acc_T4": 0.5}, 0)
    assert (b.status, b.error) == ("failed", "W&B state crashed")
    assert "_wandb" not in a.config


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, key",
    [
        ({"jobs": [{"experiment": "no_such_experiment"}]}, "jobs[0].experiment"),
        ({"columns": ["score", "top5"]}, "columns"),
        ({"metric": "top5"}, "metric"),
        ({"baseline": "nope"}, "baseline"),
        (
            {"rows": [{"id": "a", "select": {}, "references": [{"value": 1, "source": "x"}]}]},
            "rows[0].references[0].source",
        ),
        ({"colums": ["score"]}, "colums"),
    ],
)
def test_bad_spec_names_the_key(tmp_path, change, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **change}, allow_unicode=True))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_spec_that_is_not_yaml_names_the_file(tmp_path):
    for text in ("title: a: b\n", "- just\n- a list\n"):
        path = tmp_path / "broken.yaml"
        path.write_text(text)
        with pytest.raises(SpecError) as err:
            load_spec(path)
        assert err.value.key == "yaml" and str(path) in str(err.value)


def test_cli_bad_input_one_line_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["cifar10_local", str(empty)], "no run folder (metrics.json or .hydra/) found"),
        (["no_such_table", str(empty)], "no such table spec; known tables:"),
    ]
    for args, message in cases:
        proc = subprocess.run(
            [sys.executable, str(REPO / "experiments" / "render.py"), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.returncode == 2
        assert message in proc.stderr and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr
        assert not list(empty.iterdir())  # nothing written


# --- a sweep through Hydra, rendered by the callback ----------------------------------------

TINY_SPEC = {
    "title": "digits smoke",
    "state": "local",
    "hardware": "CPU",
    "gpu_hours": 0,
    "metric": "acc",
    "timesteps": [2],
    "columns": ["score", "sops", "energy_uj", "saving"],
    "baseline": "if",
    "jobs": [{"experiment": "digits_small_cnn", "sweep": {"method": ["if", "burst"]}}],
    "rows": [
        {"id": "ann", "label": "ANN", "ann": True, "select": {"method": "if"}},
        {"id": "if", "label": "IF", "select": {"method": "if"}},
        {"id": "burst", "label": "burst", "select": {"method": "burst φ=4"}},
    ],
}


def _sweep(tmp_path, tiny_overrides, *overrides):
    spec = tmp_path / "smoke.yaml"
    spec.write_text(yaml.safe_dump(TINY_SPEC, allow_unicode=True))
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, str(REPO / "run.py"), "-m", "experiment=digits_small_cnn"]
    cmd += [*tiny_overrides, f"table={spec}", f"hydra.sweep.dir={sweep_dir}", *overrides]
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
    return proc, sweep_dir


def test_submitit_local_sweep_renders_table_and_plots(tmp_path, tiny_overrides):
    """Two jobs through submitit_local; the callback writes the table, CSV and valid PNGs."""
    proc, sweep_dir = _sweep(tmp_path, tiny_overrides, "method=if,burst", "hydra/launcher=local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = find_runs([sweep_dir])
    assert [r.status for r in runs] == ["ok", "ok"]
    assert (sweep_dir / ".submitit").is_dir()  # really launched as submitit jobs
    tables = sweep_dir / "tables"
    md = (tables / "smoke.md").read_text()
    assert "| IF | 2 |" in md and "| burst | 2 |" in md and "Runs: 2 found (all ok)." in md
    rows = (tables / "smoke.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["ann", "if", "burst"]
    record = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    ours = float(rows[2].split(",")[4])
    assert ours == pytest.approx(100 * record["metrics"]["snn/test/acc_T2"], abs=1e-4)
    for kind in ("score_vs_T", "pareto", "layers"):
        png = tables / f"smoke_{kind}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        with Image.open(png) as image:
            image.verify()


def test_failed_job_is_listed_and_multirun_exits_1(tmp_path, tiny_overrides):
    """A job with a bad value fails alone; the table lists it and the sweep exits 1."""
    proc, sweep_dir = _sweep(tmp_path, tiny_overrides, "method=if", "snn.chunk=8,0")
    assert proc.returncode == 1, proc.stderr[-3000:]
    statuses = {r.folder.name: r.status for r in find_runs([sweep_dir])}
    assert statuses == {"0": "ok", "1": "failed"}
    md = (sweep_dir / "tables" / "smoke.md").read_text()
    assert "failed: ConfigError: snn.chunk" in md
    assert "| IF | 2 |" in md


def test_experiments_readme_index_is_generated_from_the_specs():
    """experiments/README.md lists every table as `render.py --index` prints it (no drift)."""
    from adacal.reporting.spec import index_markdown

    text = (REPO / "experiments" / "README.md").read_text()
    assert index_markdown(all_specs()) in text


def test_callback_finds_the_specs_of_its_experiment():
    from adacal.reporting.callback import RenderTables

    assert [s.name for s in RenderTables().specs("adaptive_cifar10_resnet20")] == ["cifar10_local"]
    assert {s.name for s in RenderTables().specs("cifar10_vgg16")} == {
        "cifar_classification",
        "energy",
    }
    assert [s.name for s in RenderTables("camvid_local").specs("anything")] == ["camvid_local"]
    assert RenderTables().specs("shapes_deeplabv3plus_resnet18") == []  # no table: nothing
    # the default experiment has a table of methods × seeds: only a sweep of those renders it
    assert RenderTables().specs("digits_small_cnn", {"calibration"}) == []
    found = RenderTables().specs("digits_small_cnn", {"method", "seed", "calibration"})
    assert [s.name for s in found] == ["digits_seeds"]


def test_swept_keys_of_a_multirun():
    from adacal.reporting.callback import swept_keys

    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"neuron": "if,burst"}},
                "overrides": {"task": ["method=if,burst", "seed=0", "snn.T=[2,4]", "+x=1,2"]},
            }
        }
    )
    assert swept_keys(config) == {"neuron", "method", "x"}


def test_callback_logs_the_rendered_table_to_the_sweeps_wandb_group(sweep, tmp_path, monkeypatch):
    from adacal.reporting import wandb_log
    from adacal.reporting.callback import log_to_wandb

    calls = []
    monkeypatch.setattr(wandb_log, "log_rendered_table", lambda *a, **k: calls.append((a, k)))
    out = render(parse_spec(SPEC, "fabricated"), [sweep], tmp_path / "out")
    logger = {"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "p", "group": "g"}
    for mode, expected in (("disabled", 0), ("offline", 1)):
        config = OmegaConf.create({"experiment_name": "e", "logger": {**logger, "mode": mode}})
        log_to_wandb(config, out)
        assert len(calls) == expected
    (rows, columns, images), kwargs = calls[0]
    assert columns[:4] == ["row_id", "row", "T", "seeds"] and len(rows) == len(out.lines)
    # numbers, not CSV text: W&B can plot the columns
    assert rows[4]["row"] == "IF" and rows[4]["T"] == 8 and rows[4]["score"] == pytest.approx(85.0)
    assert rows[4]["score_reference"] == 80.0 and rows[4]["score_delta"] == pytest.approx(5.0)
    assert rows[3]["score"] is None  # AdaFire crashed: no value, not 0
    assert set(images) == {"score_vs_T", "pareto"}
    assert (kwargs["project"], kwargs["group"], kwargs["mode"], kwargs["name"]) == (
        "p",
        "g",
        "offline",
        "fabricated",
    )
    csv_logger = OmegaConf.create({"logger": {"_target_": "lightning.pytorch.loggers.CSVLogger"}})
    log_to_wandb(csv_logger, out)
    assert len(calls) == 1  # no W&B logger: nothing logged


def test_one_broken_spec_does_not_stop_the_others(tmp_path):
    from adacal.reporting.spec import specs_for_experiment

    (tmp_path / "good.yaml").write_text(yaml.safe_dump(SPEC, allow_unicode=True))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**SPEC, "colour": 1}, allow_unicode=True))
    errors: list = []
    found = specs_for_experiment("digits_small_cnn", tmp_path, errors)
    assert [s.name for s in found] == ["good"]
    assert [e.key for e in errors] == ["colour"]
    with pytest.raises(SpecError):
        specs_for_experiment("digits_small_cnn", tmp_path)


def test_unknown_table_stops_the_multirun_before_any_job(tmp_path, tiny_overrides):
    """table=<unknown> is refused at the start: exit 2, one line naming `table`, no run."""
    cmd = [sys.executable, str(REPO / "run.py"), "-m", *tiny_overrides, "table=no_such_table"]
    cmd += [f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=0,1"]
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("adacal:")]
    assert errors == [errors[0]] and "table: no_such_table: table: no such table spec" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "sweep").rglob("metrics.json"))


def test_site_profile_reads_phi_from_the_metric_keys_else_the_neuron(tmp_path):
    """φ per site: AdaFire's choice (snn/adafire/site{i}_phi_T{T}, the one field φ is read
    from; an adaptive_T{T}.json beside it is not read), else the burst φ, else 1 (IF)."""
    from adacal.reporting.plots import site_profile
    from adacal.reporting.records import Entry

    metrics = {
        "snn/test/site1_rate_T4": 0.2,
        "snn/test/site0_rate_T4": 0.1,
        "snn/test/site1_acs_T4": 9,
    }
    chosen = {**metrics, "snn/adafire/site1_phi_T4": 7, "snn/adafire/site0_phi_T4": 3}
    ada = RunRecord(tmp_path, "ok", {"neuron": {"name": "adafire"}}, chosen)
    (tmp_path / "adaptive_T4.json").write_text(json.dumps({"adafire": {"phi": [5, 5]}}))
    assert site_profile(Entry("adafire", ada, chosen), 4) == ([3.0, 7.0], [0.1, 0.2])
    burst = RunRecord(tmp_path / "b", "ok", {"neuron": {"name": "burst", "phi": 4}}, metrics)
    assert site_profile(Entry("burst φ=4", burst, metrics), 4) == ([4.0, 4.0], [0.1, 0.2])
    plain = RunRecord(tmp_path / "c", "ok", {"neuron": {"name": "if"}}, metrics)
    assert site_profile(Entry("if", plain, metrics), 4)[0] == [1.0, 1.0]
    assert site_profile(Entry("if", plain, metrics), 8) is None  # no per-site data at T=8


def test_no_pareto_plot_without_energies(sweep, tmp_path):
    spec = parse_spec({**SPEC, "columns": ["score"], "baseline": None}, "no_energy")
    out = render(spec, [sweep], tmp_path / "out")
    assert "pareto" not in out.files and not (tmp_path / "out" / "no_energy_pareto.png").exists()
    assert out.files["score_vs_T"].is_file()


def test_render_and_plots_share_the_dataclasses_without_a_cycle(repo_root):
    """plots.py takes Line/Rendered from reporting/rendered.py, never from render.py (which
    imports plots when it draws): no render ↔ plots import cycle."""
    import ast

    from adacal.reporting import plots, render, rendered

    def imported(module) -> set[str]:
        tree = ast.parse((repo_root / "src" / "adacal" / "reporting" / module).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "adacal.reporting.render" not in imported("plots.py")
    assert "adacal.reporting.render" not in imported("rendered.py")
    assert "adacal.reporting.plots" not in imported("rendered.py")
    assert plots.Rendered is render.Rendered is rendered.Rendered
    assert plots.Line is render.Line is rendered.Line
