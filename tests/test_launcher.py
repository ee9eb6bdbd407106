"""Cluster launching: the submitit launcher presets, the `cluster:` block, and ann.resume.

The presets are composed from a copy of conf/ (so a developer's own conf/local/default.yaml
never leaks in) and handed to the real hydra-submitit plugin and submitit, stopped just
before `sbatch` would run: the tests read the batch script submitit would submit.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from adacal.checkpoint import save_state_dict
from adacal.config import validate
from adacal.errors import ConfigError
from adacal.resume import resume_plan

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))
SLURM_PRESETS = [p for p in PRESETS if p.startswith("slurm")]
CLUSTER_ENV = ("SLURM_PARTITION", "SLURM_ACCOUNT", "SLURM_QOS", "SLURM_CONSTRAINT")


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch):
    """The cluster block falls back to these variables: start every test without them."""
    for name in (*CLUSTER_ENV, "SLURM_CPU_PARTITION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def conf_dirs(tmp_path_factory):
    """``(without, with_local)``: copies of conf/ without conf/local/, and with the tracked
    conf/local.example.yaml copied verbatim to conf/local/default.yaml (as a user would)."""
    root = tmp_path_factory.mktemp("conf")
    without = root / "without" / "conf"
    shutil.copytree(CONF, without, ignore=shutil.ignore_patterns("local"))
    with_local = root / "with_local" / "conf"
    shutil.copytree(without, with_local)
    (with_local / "local").mkdir()
    shutil.copy(CONF / "local.example.yaml", with_local / "local" / "default.yaml")
    return without, with_local


def compose_hydra(conf_dir: Path, overrides: list[str], sweep_dir: Path | None = None):
    """The full config (``hydra`` node included) composed from ``conf_dir``."""
    extra = ["hydra.job.name=adacal", "paths.root_dir=/repo", "paths.output_dir=/repo/out"]
    if sweep_dir is not None:
        extra.append(f"hydra.sweep.dir={sweep_dir}")
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("config", overrides=[*extra, *overrides], return_hydra_config=True)


class _Submitted(Exception):
    """Raised instead of calling sbatch."""


def sbatch_script(cfg, monkeypatch, jobs: int = 20) -> tuple[str, object]:
    """Run the preset's launcher on ``jobs`` sweep jobs up to sbatch: (batch script, launcher)."""
    from submitit.slurm.slurm import SlurmExecutor

    scripts: list[str] = []

    def submit(self, command):
        scripts.append(self._make_submission_file_text(command, "uid"))
        raise _Submitted

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # "srun found"
    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    launcher = instantiate(cfg.hydra.launcher)  # as Hydra does: interpolations see the root
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    with pytest.raises(_Submitted):
        launcher.launch([[f"seed={i}"] for i in range(jobs)], initial_job_idx=0)
    (script,) = scripts
    return script, launcher


def sbatch_flags(script: str) -> dict[str, str | bool]:
    flags: dict[str, str | bool] = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line.removeprefix("#SBATCH --").partition("=")
            flags[key] = value if value else True
    return flags


# -- presets -------------------------------------------------------------------------------


def test_presets_are_the_expected_ones():
    assert {"local", "slurm", "slurm_ddp", "slurm_cpu"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_instantiates(conf_dirs, tmp_path, preset):
    cfg = compose_hydra(conf_dirs[0], [f"hydra/launcher={preset}"], sweep_dir=tmp_path)
    assert "submitit" in cfg.hydra.launcher._target_
    resolved = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert resolved["submitit_folder"] == f"{tmp_path}/.submitit/%j"
    launcher = instantiate(cfg.hydra.launcher)
    assert launcher.params["timeout_min"] > 0
    if preset.startswith("slurm"):
        assert type(launcher).__name__ == "SlurmLauncher"
        assert launcher.params["partition"] is None and launcher.params["account"] is None


@pytest.mark.parametrize("preset", SLURM_PRESETS)
def test_slurm_presets_requeue_with_a_time_limit_and_array_parallelism(
    conf_dirs, tmp_path, monkeypatch, preset
):
    overrides = [f"hydra/launcher={preset}"]
    if preset == "slurm_ddp":
        overrides.append("trainer=ddp")
    cfg = compose_hydra(conf_dirs[0], overrides, sweep_dir=tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher.additional_parameters.requeue is True
    assert launcher.max_num_timeout >= 1 and launcher.signal_delay_s >= 60
    assert 1 <= launcher.array_parallelism < 50
    script, _ = sbatch_script(cfg, monkeypatch, jobs=50)
    flags = sbatch_flags(script)
    assert flags["requeue"] is True  # SLURM may requeue it (preemption)
    assert flags["signal"] == f"USR2@{launcher.signal_delay_s}"  # submitit's timeout warning
    assert flags["time"] == str(launcher.timeout_min)
    assert flags["array"] == f"0-49%{launcher.array_parallelism}"  # one array job per sweep


def test_slurm_preset_asks_for_one_gpu_per_job(conf_dirs, tmp_path, monkeypatch):
    cfg = compose_hydra(conf_dirs[0], ["hydra/launcher=slurm"], sweep_dir=tmp_path)
    script, _ = sbatch_script(cfg, monkeypatch)
    flags = sbatch_flags(script)
    assert flags["gpus-per-node"] == "1" and flags["ntasks-per-node"] == "1"
    assert flags["nodes"] == "1" and "partition" not in flags and "account" not in flags


def test_slurm_ddp_preset_follows_the_trainer(conf_dirs, tmp_path, monkeypatch):
    overrides = ["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=4",
                 "trainer.num_nodes=2"]  # fmt: skip
    cfg = compose_hydra(conf_dirs[0], overrides, sweep_dir=tmp_path)
    flags = sbatch_flags(sbatch_script(cfg, monkeypatch)[0])
    assert flags["ntasks-per-node"] == "4" and flags["gpus-per-node"] == "4"
    assert flags["nodes"] == "2"
    assert flags["mem-per-gpu"] == "64G" and "mem" not in flags  # memory scales with GPUs


def test_slurm_cpu_preset_asks_for_no_gpu(conf_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_PARTITION", "gpu-part")
    monkeypatch.setenv("SLURM_CONSTRAINT", "a100")
    cfg = compose_hydra(conf_dirs[0], ["hydra/launcher=slurm_cpu"], sweep_dir=tmp_path)
    flags = sbatch_flags(sbatch_script(cfg, monkeypatch)[0])
    assert not any("gpu" in key for key in flags)
    assert flags["partition"] == "gpu-part"  # no SLURM_CPU_PARTITION: cluster.partition
    assert "constraint" not in flags  # a GPU constraint does not apply to CPU nodes
    monkeypatch.setenv("SLURM_CPU_PARTITION", "cpu-part")
    cfg = compose_hydra(conf_dirs[0], ["hydra/launcher=slurm_cpu"], sweep_dir=tmp_path)
    assert cfg.hydra.launcher.partition == "cpu-part"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_is_adacals_surviving_launcher(conf_dirs, tmp_path, preset):
    """hydra_plugins/adacal_submitit: a killed job is recorded instead of ending the sweep."""
    overrides = [f"hydra/launcher={preset}"] + (["trainer=ddp"] if preset == "slurm_ddp" else [])
    cfg = compose_hydra(conf_dirs[0], overrides, sweep_dir=tmp_path)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.adacal_submitit.launcher.")
    assert hasattr(instantiate(cfg.hydra.launcher), "_outcome")


def test_cluster_block_sets_time_cpus_and_memory(conf_dirs, tmp_path, monkeypatch):
    overrides = ["hydra/launcher=slurm_cpu", "cluster.cpus_per_task=1", "cluster.mem_gb=2",
                 "cluster.timeout_min=5", "cluster.partition=local"]  # fmt: skip
    cfg = compose_hydra(conf_dirs[0], overrides, sweep_dir=tmp_path)
    flags = sbatch_flags(sbatch_script(cfg, monkeypatch)[0])
    assert (flags["cpus-per-task"], flags["mem"], flags["time"]) == ("1", "2GB", "5")
    assert flags["partition"] == "local"
    cfg = compose_hydra(conf_dirs[0], ["hydra/launcher=slurm_cpu"], sweep_dir=tmp_path)
    flags = sbatch_flags(sbatch_script(cfg, monkeypatch)[0])  # null: the preset's values
    assert (flags["cpus-per-task"], flags["mem"], flags["time"]) == ("8", "32GB", "720")


@pytest.mark.parametrize("preset", ["slurm", "slurm_ddp"])
@pytest.mark.parametrize("zero", ["cluster.gpus_per_node=0", "hydra.launcher.gpus_per_node=0"])
def test_gpu_presets_with_zero_gpus_ask_for_no_gpu(conf_dirs, tmp_path, monkeypatch, preset, zero):
    """A CPU-only cluster rejects --gpus-per-node=0: no GPU flag (nor mem-per-gpu) at all."""
    overrides = [f"hydra/launcher={preset}", zero]
    if preset == "slurm_ddp":
        overrides += ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    cfg = compose_hydra(conf_dirs[0], overrides, sweep_dir=tmp_path)
    flags = sbatch_flags(sbatch_script(cfg, monkeypatch)[0])
    assert not any("gpu" in key for key in flags), flags
    if preset == "slurm_ddp":
        assert flags["ntasks-per-node"] == "2"


# -- cluster block ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["slurm", "slurm_ddp"])
def test_cluster_block_from_the_environment(conf_dirs, tmp_path, monkeypatch, preset):
    for name, value in zip(CLUSTER_ENV, ("gpu-env", "acct-env", "high", "h100"), strict=True):
        monkeypatch.setenv(name, value)
    cfg = compose_hydra(conf_dirs[0], [f"hydra/launcher={preset}"], sweep_dir=tmp_path)
    assert dict(cfg.cluster) == {
        "partition": "gpu-env",
        "account": "acct-env",
        "qos": "high",
        "constraint": "h100",
        "cpu_partition": "gpu-env",
        # resources: null means the preset's value
        "timeout_min": None,
        "cpus_per_task": None,
        "mem_gb": None,
        "gpus_per_node": None,
    }
    flags = sbatch_flags(sbatch_script(cfg, monkeypatch)[0])
    assert (flags["partition"], flags["account"]) == ("gpu-env", "acct-env")
    assert (flags["qos"], flags["constraint"]) == ("high", "h100")


def test_cluster_block_from_the_command_line(conf_dirs, tmp_path):
    overrides = ["hydra/launcher=slurm", "cluster.partition=p1", "cluster.account=a1"]
    cfg = compose_hydra(conf_dirs[0], overrides, sweep_dir=tmp_path)
    launcher = instantiate(cfg.hydra.launcher)
    assert (launcher.params["partition"], launcher.params["account"]) == ("p1", "a1")


def test_local_config_absent_is_fine(conf_dirs, tmp_path):
    cfg = compose_hydra(conf_dirs[0], ["hydra/launcher=slurm"], sweep_dir=tmp_path)
    assert "local" not in cfg and cfg.cluster.partition is None
    assert not (conf_dirs[0] / "local").exists()


@pytest.mark.parametrize("preset", SLURM_PRESETS)
def test_local_config_overrides_cluster_and_environment(conf_dirs, tmp_path, monkeypatch, preset):
    """conf/local/default.yaml (here: conf/local.example.yaml copied there) beats the env."""
    monkeypatch.setenv("SLURM_PARTITION", "from-env")
    monkeypatch.setenv("SLURM_QOS", "qos-env")
    cfg = compose_hydra(conf_dirs[1], [f"hydra/launcher={preset}"], sweep_dir=tmp_path)
    example = OmegaConf.load(CONF / "local.example.yaml").cluster
    launcher = instantiate(cfg.hydra.launcher)
    partition = example.cpu_partition if preset == "slurm_cpu" else example.partition
    assert launcher.params["partition"] == partition != "from-env"
    assert launcher.params["account"] == example.account
    assert launcher.params["qos"] is None  # the example sets qos: null explicitly
    assert "local" not in cfg  # @package _global_: the keys land at the root


def test_local_config_does_not_break_runs_without_a_cluster(conf_dirs, tmp_path):
    """The example sets root keys only, so the default (basic) launcher still composes."""
    cfg = compose_hydra(conf_dirs[1], [], sweep_dir=tmp_path)
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")
    assert cfg.cluster.partition == OmegaConf.load(CONF / "local.example.yaml").cluster.partition


def test_requeued_job_runs_again_in_the_same_sweep_dir(conf_dirs, tmp_path, monkeypatch):
    """The pickled job holds the launcher (with its sweep dir fixed at submission) and can be
    checkpointed: submitit requeues it up to max_num_timeout times on timeout."""
    from submitit.helpers import DelayedSubmission

    monkeypatch.chdir(tmp_path)
    cfg = compose_hydra(conf_dirs[0], ["hydra/launcher=slurm"])  # default ${now:...} sweep dir
    _, launcher = sbatch_script(cfg, monkeypatch, jobs=2)
    sweep_dir = str(launcher.config.hydra.sweep.dir)
    pickles = sorted((tmp_path / sweep_dir / ".submitit").glob("*.pkl"))
    assert len(pickles) == 2
    time.sleep(1.1)  # ${now:%Y-%m-%d_%H-%M-%S} would give another folder now
    job = DelayedSubmission.load(pickles[0])
    assert job._timeout_countdown == cfg.hydra.launcher.max_num_timeout
    assert str(job.function.config.hydra.sweep.dir) == sweep_dir
    requeued = job.function.checkpoint(*job.args, **job.kwargs)
    assert requeued.function is job.function and requeued.args == job.args


# -- ann.resume: the decision ------------------------------------------------------------------


def _finished(out: Path) -> Path:
    path = out / "ann.pt"
    save_state_dict({"w": torch.zeros(2)}, path, "test")
    return path


def _last(out: Path) -> Path:
    path = out / "lightning_checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"lightning checkpoint")
    return path


@pytest.mark.parametrize("value", [None, ""])
def test_resume_null_trains_from_scratch_whatever_the_folder_holds(tmp_path, value):
    _finished(tmp_path), _last(tmp_path)
    plan = resume_plan(value, tmp_path)
    assert (plan.action, plan.path, plan.ckpt_path) == ("fresh", None, None)


def test_resume_auto_with_nothing_trains_from_scratch(tmp_path):
    plan = resume_plan("auto", tmp_path / "not-created-yet")
    assert (plan.action, plan.ckpt_path) == ("fresh", None)


def test_resume_auto_resumes_from_last_ckpt(tmp_path):
    last = _last(tmp_path)
    plan = resume_plan("auto", tmp_path)
    assert (plan.action, plan.path, plan.ckpt_path) == ("resume", last, str(last))


def test_resume_auto_loads_a_finished_ann(tmp_path):
    _last(tmp_path)
    finished = _finished(tmp_path)
    plan = resume_plan("auto", str(tmp_path))
    assert (plan.action, plan.path, plan.ckpt_path) == ("load", finished, None)


@pytest.mark.parametrize("damage", ["no_sha256", "wrong_sha256"])
def test_resume_auto_ignores_an_unverified_ann(tmp_path, damage):
    """ann.pt without a matching .sha256 (interrupted while saving) does not count."""
    finished = _finished(tmp_path)
    sha = finished.with_name("ann.pt.sha256")
    if damage == "no_sha256":
        sha.unlink()
    else:
        sha.write_text("0" * 64 + "  ann.pt\n")
    assert resume_plan("auto", tmp_path).action == "fresh"
    last = _last(tmp_path)
    assert resume_plan("auto", tmp_path).ckpt_path == str(last)


def test_resume_explicit_path(tmp_path):
    ckpt = _last(tmp_path / "earlier_run")
    _finished(tmp_path / "this_run")  # an explicit path wins over the folder's own files
    plan = resume_plan(str(ckpt), tmp_path / "this_run")
    assert (plan.action, plan.ckpt_path) == ("resume", str(ckpt))


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_resume_explicit_path_must_be_a_file(tmp_path, kind):
    path = tmp_path / "run" / "lightning_checkpoints" / "last.ckpt"
    if kind == "directory":
        path.mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        resume_plan(str(path), tmp_path)
    assert info.value.key == "ann.resume"
    assert str(info.value).startswith(f"ann.resume: {path} ")
    assert "ann.resume=auto" in str(info.value)


def test_missing_resume_path_fails_before_any_work(compose_config, tiny_overrides, tmp_path):
    from adacal.pipeline import run
    from adacal.reporting import read_metrics

    missing = tmp_path / "nowhere" / "last.ckpt"
    cfg = compose_config([*tiny_overrides, f"ann.resume={missing}"], output_dir=tmp_path / "out")
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.key == "ann.resume"
    with pytest.raises(ConfigError):
        run(cfg)
    assert read_metrics(tmp_path / "out")["status"] == "failed"
    assert not (tmp_path / "out" / "lightning_checkpoints").exists()


def test_resume_defaults_to_auto(compose_config, tmp_path):
    assert compose_config([], output_dir=tmp_path).ann.resume == "auto"


# -- ann.resume: a requeued job, end to end ------------------------------------------------------


def _ckpt_progress(out: Path) -> tuple[int, int]:
    ckpt = torch.load(out / "lightning_checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)  # fmt: skip
    return ckpt["epoch"], ckpt["global_step"]


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_requeued_training_resumes_then_reuses_the_finished_ann(
    compose_config, tiny_overrides, tmp_path, monkeypatch, caplog
):
    import lightning

    from adacal.lightning import ANNClassifier
    from adacal.pipeline import run

    steps = {"n": 0}
    original = ANNClassifier.training_step

    @functools.wraps(original)
    def counting(self, *args, **kwargs):
        steps["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ANNClassifier, "training_step", counting)
    out = tmp_path / "job"
    base = [*tiny_overrides, "stages=[ann]"]

    # attempt 1: one epoch; the job is then stopped before training would have finished,
    # so the folder holds last.ckpt (epoch 0) but no ann.pt
    run(compose_config([*base, "trainer.max_epochs=1"], output_dir=out))
    epoch, per_epoch = _ckpt_progress(out)
    assert epoch == 0 and per_epoch > 0 and steps["n"] == per_epoch
    for name in ("ann.pt", "ann.pt.sha256", "ann.pt.cmd"):
        (out / name).unlink()

    # attempt 2 (the requeued job): continues from last.ckpt, trains only the second epoch
    steps["n"] = 0
    caplog.set_level("INFO", logger="adacal")
    second = run(compose_config([*base, "trainer.max_epochs=2", "ann.resume=auto"],
                                output_dir=out))  # fmt: skip
    assert "resuming training from" in caplog.text
    assert steps["n"] == per_epoch  # one epoch, not two: not retrained from epoch 0
    assert _ckpt_progress(out) == (1, 2 * per_epoch)
    assert (out / "ann.pt").is_file() and (out / "ann.pt.sha256").is_file()
    digest = (out / "ann.pt.sha256").read_text().split()[0]
    last_bytes = (out / "lightning_checkpoints" / "last.ckpt").read_bytes()

    # attempt 3 (requeued after training had finished): loads ann.pt, does not train at all
    def no_fit(*args, **kwargs):
        raise AssertionError("trainer.fit called although ann.pt was finished")

    monkeypatch.setattr(lightning.Trainer, "fit", no_fit)
    steps["n"] = 0
    caplog.clear()
    third = run(compose_config([*base, "trainer.max_epochs=2"], output_dir=out))
    assert "training had finished" in caplog.text and steps["n"] == 0
    assert third["ann/test/acc"] == second["ann/test/acc"]
    assert (out / "ann.pt.sha256").read_text().split()[0] == digest
    assert (out / "lightning_checkpoints" / "last.ckpt").read_bytes() == last_bytes
