"""Sweeps that survive a killed job: adacal's submitit launchers (hydra_plugins/adacal_submitit)
record a job that ended without a result, the table marks the cells it fed, and the multirun
ends with a summary and exit status 1.

The end-to-end case runs a real ``hydra/launcher=local`` sweep in which one job SIGKILLs
itself (as the out-of-memory killer would) after its first T; the SLURM versions of the
same (scancel, time limit, requeue) are in tests/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from adacal.reporting.callback import RenderTables
from adacal.reporting.metrics_file import write_metrics
from adacal.reporting.records import find_runs
from adacal.reporting.render import INCOMPLETE, render
from adacal.reporting.spec import parse_spec
from hydra_plugins.adacal_submitit.launcher import LocalLauncher, record_stopped_job

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _config(method: str, seed: int = 0) -> dict:
    neuron = {"if": {"name": "if"}, "burst": {"name": "burst", "phi": 4}}[method]
    return {"experiment_name": "digits_small_cnn", "seed": seed, "neuron": neuron,
            "compression": {"name": "none"}, "inference": {"name": "fixed"}}  # fmt: skip


def _running(folder: Path, method: str = "burst", seed: int = 0) -> Path:
    metrics = {"ann/test/acc": 0.9, "snn/test/acc_T2": 0.5, "snn/test/energy_uj_T2": 1.0}
    write_metrics(folder, metrics, _config(method, seed), {"finished_T": [2]}, status="running")
    (folder / ".hydra").mkdir(exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}"]))
    return folder


# -- the record ------------------------------------------------------------------------------


def test_a_killed_jobs_record_fails_and_keeps_its_finished_T(tmp_path):
    folder = _running(tmp_path / "1")
    stopped = {"by": "launcher", "job_id": "7_1", "state": "CANCELLED by 0"}
    record_stopped_job(folder, ["method=burst"], "job 7_1 ended without a result", stopped)
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == "job 7_1 ended without a result"
    assert record["metrics"]["snn/test/acc_T2"] == 0.5 and record["finished_T"] == [2]
    assert record["stopped"]["state"] == "CANCELLED by 0"
    assert record["stopped"]["previous_status"] == "running"
    assert record["config"]["neuron"]["name"] == "burst"
    (run,) = find_runs([tmp_path])
    assert (run.status, run.timesteps()) == ("failed", [2])


def test_a_finished_record_is_left_alone(tmp_path):
    write_metrics(tmp_path, {"snn/test/acc_T2": 0.5}, _config("if"))
    before = (tmp_path / "metrics.json").read_text()
    assert record_stopped_job(tmp_path, [], "gone", {"state": "CANCELLED"}) is None
    assert (tmp_path / "metrics.json").read_text() == before


def test_a_job_that_never_started_gets_a_folder_with_its_overrides(tmp_path):
    folder = tmp_path / "sweep" / "3"
    record_stopped_job(folder, ["method=if", "seed=2"], "gone", {"state": "CANCELLED"},
                       config=_config("if", 2))  # fmt: skip
    (run,) = find_runs([tmp_path / "sweep"])
    assert run.status == "failed" and run.overrides == ("method=if", "seed=2")
    assert run.seed == 2 and run.metrics == {}


def test_the_runs_own_error_is_kept(tmp_path):
    from adacal.reporting.metrics_file import write_failure

    write_failure(tmp_path, RuntimeError("boom"), config=_config("if"))
    record = record_stopped_job(tmp_path, [], "job 3 ended without a result", {"state": "X"})
    assert record["error"] == "job 3 ended without a result; the run recorded: RuntimeError: boom"


# -- the launcher's outcome of one job ---------------------------------------------------------


class _DeadJob:
    job_id, state = "42", "FINISHED"

    def results(self):
        from submitit.core.utils import UncompletedJobError

        raise UncompletedJobError("Job 42 (task: 0) has not produced any output (state: X)")


class _RaisedJob:
    job_id, state = "43", "FINISHED"

    def results(self):
        ret = JobReturn(overrides=["seed=1"], status=JobStatus.FAILED)
        ret.return_value = KeyboardInterrupt()
        return [ret]


def _launcher(sweep_dir: Path) -> LocalLauncher:
    launcher = LocalLauncher(submitit_folder=str(sweep_dir / ".submitit/%j"))
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    return launcher  # no hydra context: the folder falls back to <sweep dir>/<job number>


@pytest.mark.parametrize("job", [_DeadJob(), _RaisedJob()], ids=["no_result", "task_raised"])
def test_a_job_without_a_result_is_recorded_and_the_sweep_goes_on(tmp_path, job):
    _running(tmp_path / "5")
    ret, note = _launcher(tmp_path)._outcome(job, 5, ["method=burst"])
    assert ret.status == JobStatus.COMPLETED and ret.return_value is None  # Hydra goes on
    assert "#5 (method=burst): " in note and str(tmp_path / "5") in note
    record = json.loads((tmp_path / "5" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["metrics"]["snn/test/acc_T2"] == 0.5
    if isinstance(job, _DeadJob):
        assert record["error"].startswith("job 42 ended without a result")
        assert "has not produced any output" in " ".join(record["stopped"]["log_tail"])
    else:
        assert record["error"].startswith("KeyboardInterrupt")


def test_a_finished_job_passes_through(tmp_path):
    class Done:
        job_id = "1"

        def results(self):
            return [JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value=0.9)]

    ret, note = _launcher(tmp_path)._outcome(Done(), 0, [])
    assert (ret.return_value, note) == (0.9, "")
    assert not (tmp_path / "0").exists()


# -- the table marks cells of unfinished runs -------------------------------------------------

SPEC = {
    "title": "t", "state": "local", "hardware": "CPU", "gpu_hours": 0, "metric": "acc",
    "timesteps": [2], "columns": ["score", "energy_uj"],
    "jobs": [{"experiment": "digits_small_cnn", "sweep": {"method": ["if", "burst"]}}],
    "rows": [{"id": "if", "label": "IF", "select": {"method": "if"}},
             {"id": "burst", "label": "burst", "select": {"method": "burst φ=4"}}],
}  # fmt: skip


def test_cells_from_a_killed_job_are_marked_and_a_finished_rerun_wins(tmp_path):
    sweep = tmp_path / "sweep"
    write_metrics(sweep / "0", {"snn/test/acc_T2": 0.8, "snn/test/energy_uj_T2": 1.0},
                  _config("if"))  # fmt: skip
    folder = _running(sweep / "1")
    record_stopped_job(folder, ["method=burst"], "job 7_1 ended without a result", {})
    out = render(parse_spec(SPEC, "t"), [sweep], None)
    assert "| IF | 2 | 80.00 | 1.00 | 1 |" in out.markdown
    assert f"| burst | 2 | 50.00{INCOMPLETE} | 1.00{INCOMPLETE} | 1 |" in out.markdown
    assert f"{INCOMPLETE} uses a value from a run that did not finish" in out.markdown
    assert "failed: job 7_1 ended without a result (T done: 2)" in out.markdown
    # the job re-run to the end in a second sweep: its value wins, no mark
    write_metrics(tmp_path / "rerun" / "0", {"snn/test/acc_T2": 0.6}, _config("burst"))
    out = render(parse_spec(SPEC, "t"), [sweep, tmp_path / "rerun"], None)
    assert "| burst | 2 | 60.00 | 1.00† | 1 |" in out.markdown


# -- the callback: one line without a spec, a summary and exit 1 with failures -----------------


def _multirun_config(sweep: Path, experiment: str, task: list[str]) -> object:
    return OmegaConf.create({"experiment_name": experiment, "logger": None,
                             "hydra": {"sweep": {"dir": str(sweep)}, "overrides": {"task": task},
                                       "sweeper": {"params": None}}})  # fmt: skip


def test_a_sweep_no_spec_matches_says_so_in_one_line(tmp_path, capsys):
    write_metrics(tmp_path / "0", {"snn/test/acc_T2": 0.8}, _config("if"))
    config = _multirun_config(tmp_path, "shapes_deeplabv3plus_resnet18", ["seed=0,1"])
    RenderTables().on_multirun_end(config)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("adacal: no table spec matches this sweep (experiment "
                          "shapes_deeplabv3plus_resnet18, swept keys: seed)")  # fmt: skip
    assert not (tmp_path / "tables").exists()


def test_unfinished_jobs_end_the_multirun_with_a_summary_and_status_1(tmp_path, capsys):
    write_metrics(tmp_path / "0", {"snn/test/acc_T2": 0.8}, _config("if"))
    record_stopped_job(_running(tmp_path / "1"), [], "job 7_1 ended without a result", {})
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump(SPEC, allow_unicode=True))
    config = _multirun_config(tmp_path, "digits_small_cnn", ["method=if,burst"])
    with pytest.raises(SystemExit) as info:
        RenderTables(str(spec), plots=False).on_multirun_end(config)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "adacal: 1 of 2 jobs did not finish (1 failed); exit status 1" in err
    assert f"{tmp_path / '1'}: failed: job 7_1 ended without a result [T done: 2]" in err
    assert f"are marked {INCOMPLETE}): {tmp_path / 'tables' / 't.md'}" in err


# -- end to end: a local submitit sweep in which one job is SIGKILLed after its first T --------


def test_local_sweep_survives_a_job_killed_after_its_first_T(tmp_path, tiny_overrides):
    """``hydra/launcher=local``, two jobs; the burst job SIGKILLs itself once T=2 is recorded
    (tests/_job_killer.py). The sweep finishes, the table renders with the burst T=2 cells
    marked and T=4 empty, the record keeps T=2, and the multirun exits 1 with a summary."""
    spec = tmp_path / "smoke.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "timesteps": [2, 4]}, allow_unicode=True))
    sweep = tmp_path / "sweep"
    killer = ["+hydra.callbacks.killer._target_=_job_killer.KillAfterFirstT",
              "+hydra.callbacks.killer.key=neuron.name",
              "+hydra.callbacks.killer.value=burst"]  # fmt: skip
    cmd = [sys.executable, str(REPO / "run.py"), "-m", "experiment=digits_small_cnn",
           *tiny_overrides, "snn.T=[2,4]", f"table={spec}", f"hydra.sweep.dir={sweep}",
           "method=if,burst", "hydra/launcher=local", *killer]  # fmt: skip
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PATH": os.environ["PATH"],
           "PYTHONPATH": str(TESTS)}  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "adacal: 1 of 2 jobs did not finish (1 failed); exit status 1" in proc.stderr
    assert "Traceback" not in proc.stderr and "UncompletedJobError" not in proc.stderr
    statuses = {r.folder.name: (r.status, r.timesteps()) for r in find_runs([sweep])}
    assert statuses == {"0": ("ok", [2, 4]), "1": ("failed", [2])}
    record = json.loads((sweep / "1" / "metrics.json").read_text())
    assert record["error"].startswith("job ") and "ended without a result" in record["error"]
    assert record["stopped"]["previous_status"] == "running"
    md = (sweep / "tables" / "smoke.md").read_text()
    rows = {line.split("|")[1].strip() + line.split("|")[2].strip(): line
            for line in md.splitlines() if line.startswith("| ")}  # fmt: skip
    assert INCOMPLETE not in rows["IF2"] + rows["IF4"]
    assert rows["burst2"].count(INCOMPLETE) == 2  # score and energy, measured before the kill
    assert rows["burst4"].startswith("| burst | 4 | - | - |")
