"""Submitit launchers whose sweeps survive a killed job (``hydra/launcher=local|slurm*``).

The submitit plugin waits for every job with ``job.results()``: one job that ends without a
result (killed by the out-of-memory killer or SIGKILL, ``scancel``-ed, out of time after its
last requeue) raises ``UncompletedJobError`` and ends the whole multirun before the table
callback runs. These subclasses wait for every job instead, and a job that left no result is
*recorded*: its ``metrics.json`` becomes ``status: failed`` with what stopped it (the
scheduler's state, the signal) and keeps every metric it had written (the T that finished).
The sweep then ends normally, the callback renders the tables, marks the cells those jobs
fed, and exits 1 with a summary. A task that raised past ``run.py`` (``JobStatus.FAILED``) is
recorded the same way instead of aborting the sweep.

SLURM without an accounting database (e.g. ``experiments/cluster/local_slurm.sh``): submitit
asks ``sacct`` for job states and, when that fails, would wait forever for a job that died
without a result. :func:`no_accounting_watcher` then asks the job-completion log
(``sacct -c``) and ``squeue --states=all`` instead.

The SLURM launcher also applies the root ``cluster:`` block: its non-null ``timeout_min``,
``cpus_per_task``, ``mem_gb`` and ``gpus_per_node`` replace the preset's values, and a job
without GPUs (``gpus_per_node`` 0 or null) sends no GPU flag at all (a cluster without GPUs
rejects ``--gpus-per-node=0``; ``mem_per_gpu`` gives way to the node's default memory or
``mem_gb``).

Kept light: Hydra imports this module when it scans its plugins, so heavy imports (submitit,
adacal) happen inside the methods.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as base
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

CLUSTER_KEYS = ("timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node")
GPU_KEYS = ("gpus_per_node", "gpus_per_task", "cpus_per_gpu", "mem_per_gpu", "gres")
STOPPED_BY = "launcher"  # metrics.json's "stopped.by" for records this module wrote


class _SurvivingLauncher(base.BaseSubmititLauncher):
    """``launch`` as in the submitit plugin, except that every job is waited for and a job
    without a result is recorded (:func:`record_stopped_job`) instead of raised."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        jobs = self._submit(job_overrides, initial_job_idx)
        returns, stopped = [], []
        for idx, (overrides, job) in enumerate(zip(job_overrides, jobs, strict=True)):
            ret, note = self._outcome(job, initial_job_idx + idx, list(overrides))
            returns.append(ret)
            if note:
                stopped.append(note)
        if stopped:
            log.error(
                "adacal: %d of %d jobs ended without a result (recorded as failed):\n  %s",
                len(stopped),
                len(jobs),
                "\n  ".join(stopped),
            )
        return returns

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        """The plugin's submission (hydra-submitit-launcher 1.2.0), returning the jobs."""
        import submitit

        assert self.config is not None
        assert len(job_overrides) > 0
        params = self.params
        init_params = {"folder": params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update(
            **{f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in specific_init_keys}
        )
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(base.BaseQueueConf).keys())
        executor.update_parameters(
            **{
                x if x in baseparams else f"{self._EXECUTOR}_{x}": y
                for x, y in params.items()
                if x not in init_keys
            }
        )
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        self._before_submit()
        return list(executor.map_array(self, *zip(*job_params, strict=True)))

    def _before_submit(self) -> None:
        """Hook for the SLURM launcher (state polling without accounting)."""

    def _outcome(self, job: Any, idx: int, overrides: list[str]) -> tuple[JobReturn, str]:
        """The job's :class:`JobReturn`, and a summary line when it had to be recorded."""
        if self._EXECUTOR == "local":  # same file system: no need to wait 15 s for a result
            job._results_timeout_s = 1
        try:
            ret = job.results()[0]
        except Exception as err:  # UncompletedJobError, FailedJobError, a broken result file
            state = job_state(job)
            error = (
                f"job {job.job_id} ended without a result (killed, cancelled or out of time; "
                f"state {state})"
            )
            detail = str(err).strip().splitlines()
            recorded = self._record(idx, overrides, error, job, state, detail[-8:])
        else:
            if not isinstance(ret, JobReturn) or ret.status != JobStatus.FAILED:
                return ret, ""
            exc = ret._return_value
            state = "FAILED"
            error = f"{type(exc).__name__}: {exc}"
            recorded = self._record(idx, overrides, error, job, state, [])
        folder = recorded or "(no folder)"
        done = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)
        done.working_dir = str(folder)
        shown = " ".join(filter_overrides(overrides)) or "no overrides"
        return done, f"#{idx} ({shown}): {error} -> {folder}/metrics.json"

    def _record(
        self, idx: int, overrides: list[str], error: str, job: Any, state: str, detail: list[str]
    ) -> Path | None:
        try:
            folder, composed = self._job_folder(idx, overrides, str(job.job_id))
            stopped = {"by": STOPPED_BY, "job_id": str(job.job_id), "state": state,
                       "executor": self._EXECUTOR, "log_tail": detail}  # fmt: skip
            if record_stopped_job(folder, overrides, error, stopped, composed) is None:
                log.warning("adacal: job #%d had recorded ok before it ended: %s", idx, error)
            return folder
        except Exception:  # recording must never end the sweep
            log.exception("adacal: could not record job #%d (%s)", idx, error)
            return None

    def _job_folder(
        self, idx: int, overrides: list[str], job_id: str
    ) -> tuple[Path, dict[str, Any]]:
        """The job's output folder (as ``run_job`` computes it) and its config (best effort)."""
        assert self.config is not None
        try:
            assert self.hydra_context is not None
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = idx
                cfg.hydra.job.id = job_id
            folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        except Exception:
            return Path(str(self.config.hydra.sweep.dir)) / str(idx), {}
        with open_dict(cfg):
            del cfg["hydra"]
        return folder, plain(cfg)


def job_state(job: Any) -> str:
    """The scheduler's state of a finished job, with the signal for a local process."""
    try:
        state = str(job.state)
    except Exception:
        state = "UNKNOWN"
    process = getattr(job, "_process", None)
    code = process.poll() if process is not None else None
    if code is not None and code < 0:
        try:
            state += f", {signal.Signals(-code).name}"
        except ValueError:
            state += f", signal {-code}"
    return state


def plain(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as plain containers, resolving what resolves and keeping the rest as text."""

    def walk(node: Any) -> Any:
        if OmegaConf.is_dict(node):
            out = {}
            for key in node:
                try:
                    out[str(key)] = walk(node[key])
                except Exception:
                    out[str(key)] = OmegaConf.to_container(node, resolve=False).get(key)
            return out
        if OmegaConf.is_list(node):
            return [walk(v) for v in node]
        return node

    return walk(cfg)


def record_stopped_job(
    folder: str | Path,
    overrides: Sequence[str],
    error: str,
    stopped: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Turn the job folder's record into ``status: failed``; returns the new record, or None
    when the run had recorded ``ok`` (it finished; what stopped the process came later).

    Every metric the run had written is kept (the table uses them and marks their cells),
    and so is an error the run recorded itself; ``stopped`` says what the launcher saw. A job
    that never started gets a folder with this record and its ``.hydra/overrides.yaml``.
    """
    folder = Path(folder)
    path = folder / "metrics.json"
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            record = {}
    except (OSError, ValueError):
        record = {}
    if record.get("status") == "ok":
        return None
    hydra_dir = folder / ".hydra"
    if not record.get("config"):
        record["config"] = _yaml(hydra_dir / "config.yaml") or config or {}
    own = record.get("error") if record.get("status") == "failed" else None
    previous = record.get("status", "missing (no metrics.json)")
    record.update(
        status="failed",
        error=f"{error}; the run recorded: {own}" if own else error,
        stopped={**stopped, "previous_status": previous, "at": time.strftime("%FT%T%z")},
    )
    record.setdefault("metrics", {})
    if not (hydra_dir / "overrides.yaml").is_file():
        hydra_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    _write_json_atomic(path, record)
    return record


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalLauncher(_SurvivingLauncher, base.LocalLauncher):
    """``hydra/launcher=local``: local submitit processes; a killed one is recorded."""


class SlurmLauncher(_SurvivingLauncher, base.SlurmLauncher):
    """``hydra/launcher=slurm|slurm_cpu|slurm_ddp``: SLURM array jobs; a killed, cancelled or
    timed-out job is recorded; the ``cluster:`` block sets resources; works without sacct."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.poll_s = int(self.params.pop("poll_s", None) or 60)
        cluster = self.params.pop("cluster", None) or {}
        for key in CLUSTER_KEYS:
            if cluster.get(key) is not None:
                self.params[key] = cluster[key]
        if not self.params.get("gpus_per_node") and not self.params.get("gpus_per_task"):
            for key in GPU_KEYS:  # a CPU job asks for no GPU resource at all
                if key in self.params:
                    self.params[key] = None

    def _before_submit(self) -> None:
        from submitit.slurm.slurm import SlurmJob

        watcher = SlurmJob.watcher
        if not getattr(watcher, "without_accounting", False) or watcher._delay_s != self.poll_s:
            SlurmJob.watcher = no_accounting_watcher(delay_s=self.poll_s)


def no_accounting_watcher(delay_s: int = 60) -> Any:
    """submitit's SLURM watcher, made to work without ``sacct`` (built here so that submitit
    is imported only when a SLURM sweep starts)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class NoAccountingWatcher(SlurmInfoWatcher):
        """``sacct`` first; when it fails (no accounting database), the job-completion log
        (``sacct -c``, jobcomp/filetxt) and then ``squeue --states=all`` (pending, running and
        recently finished jobs), the later source winning."""

        without_accounting = True

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                self._output = subprocess.check_output(command, stderr=subprocess.PIPE)
                info = self.read_info(self._output)
            except Exception:
                info = self._without_accounting(command)
            self._info_dict.update(info)
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def _without_accounting(self, command: list[str]) -> dict[str, dict[str, str]]:
            ids = ",".join(command[i + 1] for i, c in enumerate(command) if c == "-j")
            info: dict[str, dict[str, str]] = {}
            queries = (
                (["sacct", "-c", "-o", "JobID,State,NodeList", "--parsable2", "-j", ids], ""),
                (["squeue", "-h", "-t", "all", "-o", "%i|%T|%N", "-j", ids],
                 "JobID|State|NodeList\n"),
            )  # fmt: skip
            for query, header in queries:
                try:
                    out = subprocess.run(query, capture_output=True, text=True, timeout=60)
                except (OSError, subprocess.TimeoutExpired):
                    continue
                if out.returncode == 0 and out.stdout.strip():
                    info.update(self.read_info(header + out.stdout))
            if not info:
                log.warning("adacal: no job state from sacct, sacct -c or squeue (jobs %s)", ids)
            return info

    return NoAccountingWatcher(delay_s=delay_s)
