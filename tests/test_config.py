"""Every option of every config group composes and builds its object; launcher presets compose."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from adacal.calibration.recipe import ThresholdSpec
from adacal.checkpoint import load_state_dict
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert names, f"conf/{group}/ holds no options"
    return names


def test_groups_are_enumerated():
    """The groups tested below are all the groups in conf/ (a new group needs a test here)."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir()} - {"hydra", "local"}
    assert groups == {
        "architecture",
        "calibration",
        "compression",
        "dataset",
        "experiment",
        "inference",
        "logger",
        "method",
        "neuron",
        "paths",
        "recipe",
        "task",
        "trainer",
    }


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset_builds(compose_config, tmp_path, option):
    cfg = compose_config([f"dataset={option}"], output_dir=tmp_path)
    assert cfg.dataset.name == option
    dm = instantiate(cfg.dataset)
    assert (dm.num_classes, dm.in_channels) == (cfg.dataset.num_classes, cfg.dataset.in_channels)
    if "crop_size" in cfg.dataset:  # segmentation: sizes are [H, W] pairs
        assert dm.crop_size == tuple(cfg.dataset.crop_size)
        if option == "shapes":  # the only segmentation set that needs no files
            dm.setup()
            x, y = dm.test_set[0]
            assert x.shape == (3, cfg.dataset.image_size, cfg.dataset.image_size)
            assert y.shape == x.shape[1:] and 0 <= int(y.min()) <= int(y.max()) < dm.num_classes
        return
    assert dm.image_size == cfg.dataset.image_size
    if option == "digits":  # the only data set that needs no files
        dm.setup()
        x, y = dm.test_set[0]
        assert x.shape == (1, cfg.dataset.image_size, cfg.dataset.image_size)
        assert 0 <= y < cfg.dataset.num_classes


# Each architecture with the data set it is meant for (imagenet models on a 64x64 input).
HOME = {"resnet18": "imagenet", "resnet34": "imagenet", "small_cnn": "digits"}
SEGMENTATION = ("deeplab", "fpn_", "unet_")


@pytest.mark.parametrize("option", options("architecture"))
def test_architecture_builds_forwards_and_converts(compose_config, tmp_path, option):
    if option.startswith(SEGMENTATION):
        segmentation_architecture_converts(compose_config, tmp_path, option)
        return
    dataset = HOME.get(option, "cifar10")
    overrides = [f"architecture={option}", f"dataset={dataset}"]
    if "pretrained" in compose_config(overrides, output_dir=tmp_path).architecture:
        overrides.append("architecture.pretrained=false")  # pretrained weights need the network
    cfg = compose_config(overrides, output_dir=tmp_path)
    assert cfg.architecture.name == option
    torch.manual_seed(0)
    model = instantiate(cfg.architecture).eval()
    size = 64 if dataset == "imagenet" else cfg.dataset.image_size
    x = torch.randn(1, cfg.dataset.in_channels, size, size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, cfg.dataset.num_classes)
    net = convert(model, IFNeuron(), x)  # every shipped architecture is convertible
    assert len(net.sites) > 0


@pytest.mark.parametrize("option", options("neuron"))
def test_neuron_builds(compose_config, tmp_path, option):
    cfg = compose_config([f"neuron={option}"], output_dir=tmp_path)
    assert cfg.neuron.name == option
    neuron = instantiate(cfg.neuron)
    assert isinstance(neuron, IFNeuron)
    expected = {"if": 1, "burst": cfg.neuron.get("phi"), "adafire": cfg.neuron.get("phi_init")}
    assert neuron.max_spikes() == expected[option]  # the φ every site starts with


@pytest.mark.parametrize("group", ["compression", "inference"])
def test_adaptive_options_build(compose_config, tmp_path, group):
    """compression and inference options build their object (or are plain names: none/fixed)."""
    for option in options(group):
        cfg = compose_config([f"{group}={option}"], output_dir=tmp_path)
        assert cfg[group].name == option
        if cfg[group].get("_target_"):
            obj = instantiate(cfg[group])
            assert obj.name == option
            assert type(obj).__name__ == cfg[group]._target_.rsplit(".", 1)[-1]


@pytest.mark.parametrize("option", options("calibration"))
def test_calibration_steps_build(compose_config, tmp_path, option):
    cfg = compose_config([f"calibration={option}"], output_dir=tmp_path)
    assert cfg.calibration.name == option
    steps = instantiate(cfg.calibration.steps, _convert_="all")
    assert len(steps) == len(cfg.calibration.steps)
    for step, spec in zip(steps, cfg.calibration.steps, strict=True):
        assert type(step).__name__ == spec._target_.rsplit(".", 1)[-1]
        assert callable(step)
    spec = ThresholdSpec(**cfg.calibration.threshold)
    assert spec.method in ("max", "percentile", "mse")
    assert spec.granularity in ("layer", "channel")
    assert cfg.calibration.num_samples > 0


def test_calibration_options_differ(compose_config, tmp_path):
    """none < light < advanced: each adds steps to the previous recipe."""
    steps = {
        name: [
            s._target_ for s in compose_config([f"calibration={name}"], tmp_path).calibration.steps
        ]
        for name in ("none", "light", "advanced")
    }
    assert steps["none"] == []
    assert steps["light"] == ["adacal.calibration.BiasCorrection"]
    assert "adacal.calibration.WeightCalibration" in steps["advanced"]


@pytest.mark.parametrize("group", ["task"])
def test_named_only_groups_compose(compose_config, tmp_path, group):
    for option in options(group):
        cfg = compose_config([f"{group}={option}"], output_dir=tmp_path)
        assert cfg[group].name == option


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_builds(compose_config, tmp_path, option):
    import lightning as L

    cfg = compose_config([f"trainer={option}"], output_dir=tmp_path)
    if cfg.trainer.accelerator != "cpu" and not torch.cuda.is_available():
        cfg.trainer.accelerator = "cpu"  # build the GPU presets on a CPU-only machine
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer, L.Trainer)
    assert Path(trainer.default_root_dir) == tmp_path
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert trainer.num_devices == cfg.trainer.devices
    if cfg.trainer.strategy == "ddp":
        assert type(trainer.strategy).__name__ == "DDPStrategy"


@pytest.mark.parametrize("option", options("recipe"))
def test_recipe_builds_the_training_module(compose_config, tmp_path, option):
    """Every recipe's ann.optim are arguments of the classification module, and its trainer
    keys build a Trainer (a GPU recipe built on the CPU here)."""
    import lightning as L

    cfg = compose_config([f"recipe={option}"], output_dir=tmp_path)
    model = instantiate(cfg.architecture)
    module = instantiate(cfg.task.module, model=model, **cfg.ann.optim)
    assert module.hparams.lr == cfg.ann.optim.lr
    cfg.trainer.precision = "32-true" if cfg.trainer.accelerator == "cpu" else cfg.trainer.precision
    assert isinstance(instantiate(cfg.trainer, logger=False), L.Trainer)


@pytest.mark.parametrize("option", options("logger"))
def test_logger_builds(compose_config, tmp_path, monkeypatch, option):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_config([f"logger={option}"], output_dir=tmp_path)
    if not cfg.logger.get("_target_"):
        assert option == "none" and OmegaConf.to_container(cfg.logger) == {}
        return
    logger = instantiate(cfg.logger)
    assert type(logger).__name__ == cfg.logger._target_.rsplit(".", 1)[-1]
    assert Path(logger.save_dir) == tmp_path
    if option == "wandb":
        assert cfg.logger.mode == "disabled"  # the environment wins over the offline default
        assert cfg.logger.group == cfg.experiment_name
        logger.experiment.finish()
    else:
        logger.log_metrics({"x": 1.0})
        logger.save()
        assert Path(logger.log_dir).is_relative_to(tmp_path)


@pytest.mark.parametrize("option", options("paths"))
def test_paths_follow_hydra_runtime(compose_config, tmp_path, monkeypatch, option, repo_root):
    """Without overrides, output_dir is Hydra's run folder and root_dir the launch directory."""
    monkeypatch.delenv("PROJECT_ROOT", raising=False)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths={option}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.cwd = str(repo_root)
    HydraConfig.instance().set_config(cfg)
    try:
        assert cfg.paths.output_dir == str(tmp_path / "run")
        assert cfg.paths.log_dir == str(tmp_path / "run")
        assert cfg.paths.root_dir == str(repo_root)
        assert cfg.paths.data_dir == f"{repo_root}/data"
        assert cfg.trainer.default_root_dir == str(tmp_path / "run")
        monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
        assert cfg.paths.checkpoint_dir == f"{tmp_path}/checkpoints"
    finally:
        HydraConfig.instance().cfg = None


@pytest.mark.parametrize("option", options("method"))
def test_method_selects_neuron_compression_inference(compose_config, tmp_path, option):
    """A method option is a table row: its neuron × compression × inference, named alike."""
    from adacal.reporting.records import method_label

    cfg = compose_config([f"method={option}"], output_dir=tmp_path)
    config = OmegaConf.to_container(cfg, resolve=True)
    expected = {
        "if": "if",
        "burst": "burst φ=4",
        "adafire": "adafire",
        "adafire_ssc": "adafire + ssc",
        "adafire_iat": "adafire + iat",
        "adafire_ssc_iat": "adafire + ssc + iat",
    }
    assert method_label(config) == expected[option]
    if cfg.compression.name == "ssc":  # one run also gives the rows before compression
        assert cfg.compression.compare_uncompressed
    if cfg.inference.name == "iat":
        assert cfg.inference.compare_full


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_composes_and_builds(compose_config, tmp_path, option):
    cfg = compose_config([f"experiment={option}"], output_dir=tmp_path)
    assert cfg.experiment_name == option
    # every experiment is named [ablation_<axis>_|adaptive_|calibration_|efficiency_|
    # frontier_<axis>_]
    # <dataset>_<architecture> and selects those (an architecture named for its data set,
    # vgg16_imagenet, drops the suffix)
    arch = cfg.architecture.name.removesuffix(f"_{cfg.dataset.name}")
    assert option.endswith(f"{cfg.dataset.name}_{arch}")
    assert option == f"{cfg.dataset.name}_{arch}" or option.startswith(
        ("ablation_", "adaptive_", "calibration_", "efficiency_", "frontier_")
    )
    assert cfg.dataset.name in cfg.tags and arch in cfg.tags
    dm = instantiate(cfg.dataset)  # built, not set up (needs the data files)
    assert dm.num_classes == cfg.dataset.num_classes
    if cfg.architecture.get("pretrained"):
        cfg.architecture.pretrained = False  # the weights need the network
    if cfg.architecture.get("encoder_weights"):
        cfg.architecture.encoder_weights = None
    model = instantiate(cfg.architecture)
    assert isinstance(model, torch.nn.Module)
    if cfg.ann.checkpoint:  # a tracked checkpoint must verify and fit the experiment's model
        assert Path(cfg.ann.checkpoint).is_relative_to(Path(cfg.paths.root_dir))
        load_state_dict(model, cfg.ann.checkpoint, key="ann.checkpoint")
    else:
        assert cfg.ann.train or cfg.architecture.get("pretrained") is not None


@pytest.mark.parametrize(
    ("launcher", "cls"),
    [("local", "LocalLauncher"), ("slurm", "SlurmLauncher"), ("submitit_local", "LocalLauncher")],
)
def test_launcher_presets_compose(compose_config, tmp_path, monkeypatch, launcher, cls):
    monkeypatch.setenv("SLURM_PARTITION", "gpu-test")
    monkeypatch.delenv("SLURM_ACCOUNT", raising=False)
    cfg = compose_config([f"hydra/launcher={launcher}"], output_dir=tmp_path, hydra=True)
    target = cfg.hydra.launcher._target_
    assert "submitit" in target and target.endswith(cls)
    if launcher == "local":
        assert cfg.hydra.launcher.gpus_per_node == 0 and cfg.hydra.launcher.cpus_per_task == 2
    if launcher == "slurm":
        assert cfg.hydra.launcher.partition == "gpu-test"
        assert cfg.hydra.launcher.account is None
        assert cfg.hydra.launcher.max_num_timeout == 3


@pytest.mark.parametrize("option", [o for o in options("experiment") if o.startswith("ablation_")])
def test_ablation_sweeps_compose_every_combination(compose_config, tmp_path, option):
    """Each ablation names its sweep (hydra.sweeper.params); every combination composes."""
    import itertools

    cfg = compose_config([f"experiment={option}"], output_dir=tmp_path, hydra=True)
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert params and set(params) <= {"neuron", "compression", "inference"}
    for values in itertools.product(*params.values()):
        overrides = [
            f"experiment={option}",
            *(f"{k}={v}" for k, v in zip(params, values, strict=True)),
        ]
        job = compose_config(overrides, output_dir=tmp_path)
        for group, value in zip(params, values, strict=True):
            assert job[group].name == value
            if job[group].get("_target_"):
                assert instantiate(job[group]).name == value


def segmentation_architecture_converts(compose_config, tmp_path, option):
    """smp models on the synthetic shapes set: [1, 3, 64, 64] -> [1, K, 64, 64] logits, and a
    converted copy (relu mode) gives the same output."""
    cfg = compose_config([f"architecture={option}", "task=segmentation", "dataset=shapes"],
                         output_dir=tmp_path)  # fmt: skip
    assert cfg.architecture.encoder_weights is None  # offline by default
    torch.manual_seed(0)
    model = instantiate(cfg.architecture).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (1, cfg.dataset.num_classes, 64, 64)
        net = convert(model, IFNeuron(), x)
        assert len(net.sites) > 10
        torch.testing.assert_close(net(x), y, atol=1e-4, rtol=1e-4)


# Shared bases: conf/<group>/_base/ holds what the options of a group share (not an option
# itself), conf/calibration/threshold/ is a sub-group. Composed values are pinned against
# experiments/checks/config_equal.py dumps; these tests pin the structure.
CIFAR = [
    f"{d}_{a}" for d in ("cifar10", "cifar100") for a in ("resnet20", "resnet20_wide", "vgg16")
]


def raw(group: str, option: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))


@pytest.mark.parametrize("group", ["architecture", "calibration", "experiment", "trainer"])
def test_bases_are_not_options(compose_config, tmp_path, group):
    """A group's _base/ folder is no option of it (and no top-level file is a base)."""
    from hydra.errors import MissingConfigException

    assert (CONF / group / "_base").is_dir()
    assert not any(o.startswith("_") for o in options(group))
    with pytest.raises(MissingConfigException):
        compose_config([f"{group}=_base"], output_dir=tmp_path)


def test_trainer_options_differ_only_where_stated(compose_config, tmp_path):
    """cpu, gpu and ddp share conf/trainer/_base/trainer.yaml and differ only in these keys."""
    cfg = {
        o: OmegaConf.to_container(compose_config([f"trainer={o}"], tmp_path).trainer, resolve=True)
        for o in ("cpu", "gpu", "ddp")
    }

    def differing(a: dict, b: dict) -> set[str]:
        return {k for k in a.keys() | b.keys() if a.get(k, "absent") != b.get(k, "absent")}

    assert differing(cfg["cpu"], cfg["gpu"]) == {"accelerator", "deterministic", "benchmark"}
    assert differing(cfg["gpu"], cfg["ddp"]) == {
        "accelerator", "devices", "strategy", "sync_batchnorm", "use_distributed_sampler",
    }  # fmt: skip
    assert (cfg["cpu"]["accelerator"], cfg["cpu"]["deterministic"]) == ("cpu", True)
    assert (cfg["gpu"]["accelerator"], cfg["gpu"]["deterministic"]) == ("gpu", False)
    assert cfg["ddp"]["strategy"] == "ddp" and cfg["ddp"]["devices"] == 2
    for option in options("trainer"):  # each option states only what differs from the base
        assert raw("trainer", option)["defaults"][0] == "_base/trainer@_here_"
        assert "max_epochs" not in raw("trainer", option)


@pytest.mark.parametrize("option", options("calibration"))
@pytest.mark.parametrize("method", options("calibration/threshold"))
def test_calibration_threshold_subgroup(compose_config, tmp_path, option, method):
    """calibration/threshold=<method> sets only calibration.threshold.method, on any recipe;
    calibration.threshold.method=<method> gives the same config."""
    from adacal.calibration.thresholds import METHODS

    assert method in METHODS
    default = compose_config([f"calibration={option}"], tmp_path).calibration
    group = compose_config([f"calibration={option}", f"calibration/threshold={method}"], tmp_path)
    key = compose_config(
        [f"calibration={option}", f"calibration.threshold.method={method}"], tmp_path
    )
    assert group.calibration.threshold.method == method
    assert OmegaConf.to_container(group.calibration) == OmegaConf.to_container(key.calibration)
    expected = OmegaConf.to_container(default)
    expected["threshold"]["method"] = method
    assert OmegaConf.to_container(group.calibration) == expected
    assert ThresholdSpec(**group.calibration.threshold).method == method


def test_calibration_options_share_the_base(compose_config, tmp_path):
    """Each recipe's threshold method comes from the sub-group and its granularity from the
    recipe (channel for light and advanced, measured better on CIFAR-10; the base's layer for
    none); the rest of the threshold block and seed/batch size from
    conf/calibration/_base/calibration.yaml."""
    base = raw("calibration/_base", "calibration")
    assert set(options("calibration/threshold")) == {"max", "percentile", "mse"}
    expected_method = {"none": "max", "light": "mse", "advanced": "mse"}
    expected_granularity = {"none": "layer", "light": "channel", "advanced": "channel"}
    for option in options("calibration"):
        cfg = compose_config([f"calibration={option}"], tmp_path)
        assert cfg.calibration.threshold.method == expected_method[option]
        expected = {
            **base["threshold"],
            "method": expected_method[option],
            "granularity": expected_granularity[option],
        }
        assert expected == OmegaConf.to_container(cfg.calibration.threshold)
        assert (cfg.calibration.seed, cfg.calibration.batch_size) == (0, 128)
        own = raw("calibration", option).get("threshold", {})  # at most the granularity
        assert set(own) <= {"granularity"}
    assert compose_config(["calibration=advanced"], tmp_path).calibration.num_samples == 1024


SMP = [o for o in options("architecture") if o.startswith(SEGMENTATION)]


@pytest.mark.parametrize("option", SMP)
def test_smp_architectures_share_the_base(compose_config, tmp_path, option):
    """Every segmentation-models-pytorch option is the base plus its name, arch and encoder."""
    base = raw("architecture/_base", "smp")
    cfg = OmegaConf.to_container(
        compose_config([f"architecture={option}"], tmp_path).architecture, resolve=False
    )
    assert set(cfg) == set(base) | {"name", "arch", "encoder"}
    assert {k: cfg[k] for k in base} == base
    assert cfg["name"] == option == f"{cfg['arch']}_{cfg['encoder']}"
    assert set(raw("architecture", option)) == {"defaults", "name", "arch", "encoder"}


def test_smp_builder_is_named_once():
    """segmentation_model is named in the base only; the six smp options include it."""
    assert len(SMP) == 6
    targets = {raw("architecture", o).get("_target_") for o in options("architecture")}
    assert "adacal.models.segmentation.segmentation_model" not in targets  # only in the base


@pytest.mark.parametrize("option", CIFAR)
def test_cifar_experiments_derive_their_name(compose_config, tmp_path, option):
    """The six CIFAR experiments share conf/experiment/_base/cifar.yaml: name, tags and data
    folder follow from the data set and architecture each selects (never written out)."""
    cfg = compose_config([f"experiment={option}"], output_dir=tmp_path)
    assert cfg.experiment_name == option == f"{cfg.dataset.name}_{cfg.architecture.name}"
    assert list(cfg.tags) == [cfg.dataset.name, cfg.architecture.name]
    assert cfg.dataset.root == f"{cfg.paths.data_dir}/{cfg.dataset.name}"
    assert list(cfg.snn.T) == [4, 8, 16, 32, 64] and cfg.snn.batch_size == 500
    assert cfg.ann.checkpoint == (
        f"{cfg.paths.checkpoint_dir}/cifar10_resnet20.pt" if option == "cifar10_resnet20" else None
    )
    text = (CONF / "experiment" / f"{option}.yaml").read_text()
    assert "experiment_name" not in text and "tags" not in text and "snn" not in text


def test_default_job_name(compose_config, tmp_path):
    """The default job, and experiment=digits_small_cnn (which states no name): digits_small_cnn."""
    assert compose_config([], tmp_path).experiment_name == "digits_small_cnn"
    assert compose_config(["experiment=digits_small_cnn"], tmp_path).experiment_name == (
        "digits_small_cnn"
    )
