"""End-to-end on a real SLURM: the one-node cluster of experiments/cluster/local_slurm.sh.

Marked ``slurm``; skipped with one line when no cluster answers (start one with
``experiments/cluster/local_slurm.sh start``; ``.ci/run`` does when it can install it). The
cluster is found through ``SLURM_CONF``, else the script's default
``/tmp/adacal-slurm-$USER/slurm.conf``. Jobs are tiny digits runs (1 CPU, 2 GB each).

- a sweep on ``hydra/launcher=slurm_cpu`` in which one running job is ``scancel``-ed: the sweep
  finishes, the job is recorded, its cells marked, exit 1; the other job's numbers are those
  of the basic launcher; (slow) a method × seed sweep equals the basic launcher's, job by job;
- (slow) a job that hits its time limit is signalled, requeued and ends with the numbers of an
  uninterrupted run; the same for ``scontrol requeue`` (preemption);
- (slow) ``slurm_ddp`` with 2 tasks on CPUs (gloo) gives the numbers of 1 process.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from adacal.reporting.records import find_runs
from adacal.reporting.render import INCOMPLETE

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEFAULT_CONF = Path(f"/tmp/adacal-slurm-{getpass.getuser()}/slurm.conf")
# each job: 1 CPU and 2 GB on the default partition of the local cluster
SLURM = ["hydra/launcher=slurm_cpu", "cluster.cpus_per_task=1", "cluster.mem_gb=2",
         "hydra.launcher.poll_s=5"]  # fmt: skip
SPEC = {
    "title": "slurm smoke", "state": "local", "hardware": "CPU", "gpu_hours": 0,
    "metric": "acc", "timesteps": [2, 4], "columns": ["score", "energy_uj"],
    "jobs": [{"experiment": "digits_small_cnn", "sweep": {"method": ["if", "burst"]}}],
    "rows": [{"id": "ann", "label": "ANN", "ann": True, "select": {"method": "if"}},
             {"id": "if", "label": "IF", "select": {"method": "if"}},
             {"id": "burst", "label": "burst", "select": {"method": "burst φ=4"}}],
}  # fmt: skip


def cluster_problem(conf: Path) -> str | None:
    """Why no local cluster can be used (None: it answers with a usable node)."""
    if not shutil.which("sinfo"):
        return "SLURM is not installed (experiments/cluster/local_slurm.sh start installs it)"
    if not conf.is_file():
        return f"no {conf}: start a cluster with experiments/cluster/local_slurm.sh start"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=15, env={**os.environ, "SLURM_CONF": str(conf)})  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"sinfo does not answer ({conf})"
    states = out.stdout.split()
    if out.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        return f"the SLURM cluster of {conf} is not up (sinfo: {states or out.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    conf = Path(os.environ.get("SLURM_CONF") or DEFAULT_CONF)
    problem = cluster_problem(conf)
    if problem:
        pytest.skip(f"no local SLURM cluster: {problem}")
    return {
        "SLURM_CONF": str(conf),
        "PATH": os.environ["PATH"],
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(TESTS),
        "HOME": str(Path.home()),
    }


def command(sweep: Path, overrides: list[str], multirun: bool = True) -> list[str]:
    cmd = [sys.executable, str(REPO / "run.py"), *(["-m"] if multirun else [])]
    where = f"hydra.sweep.dir={sweep}" if multirun else f"hydra.run.dir={sweep}"
    return [*cmd, "experiment=digits_small_cnn", where, *overrides]


def run(sweep: Path, overrides: list[str], env: dict, multirun: bool = True, timeout: int = 600):
    return subprocess.run(command(sweep, overrides, multirun), capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)  # fmt: skip


def numbers(folder: Path) -> dict[str, float]:
    """A run's metrics without wall-clock times."""
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "ok", record.get("error")
    return {k: v for k, v in record["metrics"].items() if "/time" not in k and "time/" not in k}


def array_jobs(sweep: Path) -> list[str]:
    """The SLURM ids (``<array>_<task>``, or ``<id>`` for a one-job sweep) of the sweep's jobs."""
    folder = sweep / ".submitit"
    found = folder.iterdir() if folder.is_dir() else []
    names = [p.name for p in found]
    tasks = [n for n in names if re.fullmatch(r"\d+_\d+", n)]  # an array's folder is <array>/
    single = [n for n in names if re.fullmatch(r"\d+", n)]
    return sorted(tasks, key=lambda n: int(n.split("_")[1])) if tasks else single


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sweep ended before {what}: {err[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def finished_T(folder: Path) -> list[int]:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("finished_T") or []
    except (OSError, ValueError):
        return []


@contextmanager
def releasing_requeued(sweep: Path, env: dict, time_limit_min: int | None = None) -> Iterator[None]:
    """SLURM holds a requeued job for two minutes (``Reason=BeginTime``) before it may start
    again; on the test cluster, a thread lets the sweep's requeued jobs start at once (with
    ``time_limit_min`` as their time limit when given)."""
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(1.0):
            for job in array_jobs(sweep):
                out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"], env=env,
                                     capture_output=True, text=True, timeout=30)  # fmt: skip
                if "BeginTime" in out.stdout:
                    update = ["StartTime=now"]
                    if time_limit_min:
                        update.append(f"TimeLimit={time_limit_min}")
                    subprocess.run(["scontrol", "update", f"jobid={job}", *update],
                                   env=env, capture_output=True, timeout=30)  # fmt: skip

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def cancel_sweep(sweep: Path, env: dict) -> None:
    ids = {job.split("_")[0] for job in array_jobs(sweep)}
    if ids:
        subprocess.run(["scancel", *ids], env=env, capture_output=True, timeout=30)


# -- a sweep on SLURM: one array job, the basic launcher's numbers, a cancelled job ----------


def test_sweep_on_slurm_survives_scancel_and_matches_the_basic_launcher(
    tmp_path, slurm_env, tiny_overrides
):
    """Two jobs, one array job. The burst job stalls after T=2 (tests/_job_killer.py,
    ``sig=STALL``: it holds the interpreter as a long computation would) and the test
    ``scancel``s it: the sweep still finishes, the job is recorded as failed (state CANCELLED)
    with its T=2, the table renders with its cells marked, and the multirun exits 1 with a
    summary. The IF job's numbers equal those of the same run under the basic launcher."""
    spec = tmp_path / "smoke.yaml"
    spec.write_text(yaml.safe_dump(SPEC, allow_unicode=True))
    sweep = tmp_path / "sweep"
    stall = ["+hydra.callbacks.stall._target_=_job_killer.KillAfterFirstT",
             "+hydra.callbacks.stall.key=neuron.name", "+hydra.callbacks.stall.value=burst",
             "+hydra.callbacks.stall.sig=STALL"]  # fmt: skip
    overrides = [*tiny_overrides, "snn.T=[2,4]", f"table={spec}"]
    on_slurm = [*overrides, "method=if,burst", *SLURM, "cluster.partition=local", *stall]
    proc = subprocess.Popen(command(sweep, on_slurm), cwd=REPO, env=slurm_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: finished_T(sweep / "1") == [2], 400, "job 1 to finish T=2", proc)
        jobs = array_jobs(sweep)
        assert len(jobs) == 2 and jobs[0].split("_")[0] == jobs[1].split("_")[0]  # one array
        subprocess.run(["scancel", jobs[1]], env=slurm_env, check=True, timeout=30)
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            cancel_sweep(sweep, slurm_env)
    assert proc.returncode == 1, err[-3000:]
    assert "adacal: 1 of 2 jobs did not finish (1 failed); exit status 1" in err
    assert "UncompletedJobError" not in err and "Traceback" not in err
    record = json.loads((sweep / "1" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["stopped"]["job_id"] == jobs[1]
    assert record["stopped"]["state"].startswith("CANCELLED"), record["stopped"]
    assert f"{sweep / '1'}: failed: job {jobs[1]} ended without a result" in err
    statuses = {r.folder.name: (r.status, r.timesteps()) for r in find_runs([sweep])}
    assert statuses == {"0": ("ok", [2, 4]), "1": ("failed", [2])}
    md = (sweep / "tables" / "smoke.md").read_text()
    burst = [line for line in md.splitlines() if line.startswith("| burst |")]
    assert burst[0].count(INCOMPLETE) == 2 and burst[1].startswith("| burst | 4 | - | - |")
    assert all(INCOMPLETE not in line for line in md.splitlines() if line.startswith("| IF |"))
    basic = run(tmp_path / "basic", [*overrides, "method=if"], slurm_env, multirun=False)
    assert basic.returncode == 0, basic.stderr[-3000:]
    assert numbers(sweep / "0") == numbers(tmp_path / "basic")


@pytest.mark.slow
def test_sweep_of_methods_and_seeds_on_slurm_matches_the_basic_launcher(
    tmp_path, slurm_env, tiny_overrides
):
    """method × seed (4 jobs) on SLURM and with the basic launcher: the same numbers per job
    and the same table."""
    spec = tmp_path / "smoke.yaml"
    spec.write_text(yaml.safe_dump(SPEC, allow_unicode=True))
    overrides = [*tiny_overrides, "snn.T=[2,4]", f"table={spec}", "method=if,burst", "seed=0,1"]
    on_slurm = run(tmp_path / "slurm", [*overrides, *SLURM], slurm_env, timeout=900)
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:]
    assert len({job.split("_")[0] for job in array_jobs(tmp_path / "slurm")}) == 1
    basic = run(tmp_path / "basic", overrides, slurm_env, timeout=900)
    assert basic.returncode == 0, basic.stderr[-3000:]
    for job in ("0", "1", "2", "3"):
        assert numbers(tmp_path / "slurm" / job) == numbers(tmp_path / "basic" / job)
    table = [(tmp_path / d / "tables" / "smoke.md").read_text() for d in ("slurm", "basic")]
    assert table[0].split("| row |")[1] == table[1].split("| row |")[1]
    assert "Runs: 4 found (all ok)." in table[0] and INCOMPLETE not in table[0]


# -- requeue: time limit and preemption ---------------------------------------------------------

# training that lasts (40 short epochs) so that a signal lands in it: SLURM checks time limits
# about every 30 s, so USR2 may come half a minute after the limit is cut
TRAIN = ["trainer.max_epochs=40", "dataset.train_limit=600"]


def _attempts(sweep: Path, job: str) -> str:
    logs = sweep / ".submitit" / job
    return "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*_log.*")))


@pytest.mark.slow
def test_time_limit_requeues_and_resumes_with_the_same_numbers(tmp_path, slurm_env, tiny_overrides):
    """A job reaches its time limit while training: once last.ckpt is written, the test cuts
    the running job's limit (``scontrol update TimeLimit``) so that it ends within a minute.
    SLURM sends USR2 (``signal_delay_s`` 60 s before the limit), submitit checkpoints and
    requeues the job, the requeued job resumes training from last.ckpt in its own folder and
    ends like an uninterrupted run (the limit is given back when the job is requeued)."""
    overrides = [*tiny_overrides, *TRAIN, "seed=0"]
    limit = ["hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=60",
             "hydra.launcher.max_num_timeout=3"]  # fmt: skip
    sweep = tmp_path / "slurm"
    proc = subprocess.Popen(command(sweep, [*overrides, *SLURM, *limit]), cwd=REPO,
                            env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    last = sweep / "0" / "lightning_checkpoints" / "last.ckpt"
    try:
        wait_for(last.is_file, 400, "last.ckpt", proc)
        (job,) = array_jobs(sweep)
        elapsed = _elapsed_s(job, slurm_env)
        minutes = elapsed // 60 + 1 + (60 - elapsed % 60 < 20)  # 20..80 s left: USR2 at once
        with releasing_requeued(sweep, slurm_env, time_limit_min=10):
            subprocess.run(["scontrol", "update", f"jobid={job}", f"TimeLimit={minutes}"],
                           env=slurm_env, check=True, timeout=30)  # fmt: skip
            out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            cancel_sweep(sweep, slurm_env)
    assert proc.returncode == 0, err[-3000:]
    logs = _attempts(sweep, job)
    assert "this job is timed-out" in logs and "Requeued job" in logs
    assert "resuming training from" in logs
    single = run(tmp_path / "basic", overrides, slurm_env, multirun=False)
    assert single.returncode == 0, single.stderr[-3000:]
    same_numbers(sweep / "0", tmp_path / "basic", logs)


def _elapsed_s(job: str, env: dict) -> int:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%M"], env=env, capture_output=True,
                         text=True, timeout=30).stdout.strip()  # fmt: skip
    seconds = 0
    for part in out.replace("-", ":").split(":"):
        seconds = seconds * 60 + int(part or 0)
    return seconds


def same_numbers(requeued: Path, uninterrupted: Path, logs: str) -> None:
    """The requeued job's numbers are the uninterrupted run's, bit for bit (last.ckpt also
    holds the RNG states, so the resumed epochs shuffle as the uninterrupted ones did)."""
    ours, theirs = numbers(requeued), numbers(uninterrupted)
    differ = sorted(k for k in theirs if ours.get(k) != theirs[k])
    assert ours == theirs, f"{len(differ)} metrics differ after a resume, e.g. {differ[:3]}"


@pytest.mark.slow
def test_scontrol_requeue_resumes_with_the_same_numbers(tmp_path, slurm_env, tiny_overrides):
    """Preemption: ``scontrol requeue`` once the job has written last.ckpt; SLURM kills and
    restarts it, and it resumes training from last.ckpt."""
    overrides = [*tiny_overrides, *TRAIN]
    sweep = tmp_path / "slurm"
    proc = subprocess.Popen(command(sweep, [*overrides, *SLURM, "seed=0"]), cwd=REPO,
                            env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    last = sweep / "0" / "lightning_checkpoints" / "last.ckpt"
    try:
        wait_for(last.is_file, 400, "last.ckpt", proc)
        (job,) = array_jobs(sweep)
        with releasing_requeued(sweep, slurm_env):
            subprocess.run(["scontrol", "requeue", job], env=slurm_env, check=True, timeout=30)
            out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            cancel_sweep(sweep, slurm_env)
    assert proc.returncode == 0, err[-3000:]
    logs = _attempts(sweep, job)
    assert "resuming training from" in logs
    single = run(tmp_path / "basic", [*overrides, "seed=0"], slurm_env, multirun=False)
    assert single.returncode == 0, single.stderr[-3000:]
    same_numbers(sweep / "0", tmp_path / "basic", logs)


# -- DDP: 2 tasks on the one node ----------------------------------------------------------------


@pytest.mark.slow
def test_slurm_ddp_two_cpu_tasks_match_one_process(tmp_path, slurm_env, tiny_overrides):
    """``trainer=ddp`` (gloo on CPUs) with ``hydra/launcher=slurm_ddp`` and
    ``cluster.gpus_per_node=0``: 2 tasks on the node convert, calibrate and evaluate one
    committed ANN and report the SNN numbers of one process (sums over shards: to 1e-6)."""
    ckpt = tmp_path / "ann.pt"
    train = run(tmp_path / "train", [*tiny_overrides, "stages=[ann]", f"ann.export_to={ckpt}"],
                slurm_env, multirun=False)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    convert = [*tiny_overrides, f"ann.checkpoint={ckpt}", "seed=0"]
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "hydra/launcher=slurm_ddp", "hydra.launcher.poll_s=5", "cluster.gpus_per_node=0",
           "cluster.cpus_per_task=1", "cluster.mem_gb=4"]  # fmt: skip
    two = run(tmp_path / "ddp", [*convert, *ddp], slurm_env)
    assert two.returncode == 0, two.stderr[-3000:]
    (job,) = array_jobs(tmp_path / "ddp")
    script = tmp_path / "ddp" / ".submitit" / job / f"{job.split('_')[0]}_submission.sh"
    flags = script.read_text() if script.is_file() else ""
    assert "--ntasks-per-node=2" in flags and "gpu" not in flags
    one = run(tmp_path / "one", convert, slurm_env, multirun=False)
    assert one.returncode == 0, one.stderr[-3000:]
    ours = {k: v for k, v in numbers(tmp_path / "ddp" / "0").items() if k.startswith("snn/test/")}
    theirs = {k: v for k, v in numbers(tmp_path / "one").items() if k.startswith("snn/test/")}
    assert ours.keys() == theirs.keys() and ours
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def test_local_slurm_script_status(slurm_env):
    script = REPO / "experiments" / "cluster" / "local_slurm.sh"
    env = {**os.environ, **slurm_env, "ADACAL_SLURM_DIR": str(Path(slurm_env["SLURM_CONF"]).parent)}
    out = subprocess.run(
        [str(script), "status"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "idle" in out.stdout or "mix" in out.stdout or "alloc" in out.stdout
