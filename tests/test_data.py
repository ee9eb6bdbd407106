"""Datamodules: digits split and calibration subset, CIFAR from an ImageFolder root (tensor cache,
augmentation), config errors, Hydra configs, and the real CIFAR-10 archive when it is present."""

from __future__ import annotations

import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from _archives import SHARED_DATA, realdata
from adacal.data import CIFARDataModule, DigitsDataModule, ImageNetDataModule, build_image_cache
from adacal.data import cache as cache_mod
from adacal.data import cifar as cifar_mod
from adacal.data.transforms import TensorTransform, cutout, random_crop
from adacal.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def make_image_folder(root: Path, classes: int = 10, per_class: tuple[int, int] = (3, 2)) -> Path:
    """``root/{train,test}/c<k>/<i>.{png,jpg}``: 32x32 RGB (one 40x40 image to test resizing)."""
    gen = torch.Generator().manual_seed(0)
    for split, n in zip(("train", "test"), per_class, strict=True):
        for k in range(classes):
            folder = root / split / f"c{k:02d}"
            folder.mkdir(parents=True)
            for i in range(n):
                size = 40 if (k, i) == (0, 0) else 32
                pixels = torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8)
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.{ext}")
    return root


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "fake")


# -- digits ------------------------------------------------------------------------------


def test_digits_shapes_and_deterministic_split() -> None:
    a, b = DigitsDataModule(), DigitsDataModule()
    a.setup(), b.setup()
    assert (a.num_classes, a.in_channels, a.image_size) == (10, 1, 32)
    assert len(a.train_set) + len(a.test_set) == 1797 and len(a.test_set) == 360
    assert torch.equal(a.test_set.images, b.test_set.images)
    assert torch.equal(a.test_set.labels, b.test_set.labels)
    assert torch.bincount(a.test_set.labels).min() >= 35  # stratified
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (64, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    x, _ = next(iter(a.val_dataloader()))
    assert x.mean().abs() < 0.3 and 0.7 < x.std() < 1.3  # normalised
    c = DigitsDataModule(seed=1)
    c.setup()
    assert not torch.equal(a.test_set.labels, c.test_set.labels)


def test_calibration_set_is_fixed_by_its_seed() -> None:
    dm = DigitsDataModule()
    x1, y1, i1 = dm.calibration_set(128, seed=0)
    x2, y2, i2 = DigitsDataModule().calibration_set(128, seed=0)
    torch.manual_seed(123)  # the global RNG must not matter
    x3, y3, i3 = dm.calibration_set(128, seed=1)
    assert x1.shape == (128, 1, 32, 32) and y1.shape == (128,) and i1.dtype == torch.long
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)
    assert not torch.equal(i1, i3)
    assert len(set(i1.tolist())) == 128
    # test-time transform: the calibration images equal the un-augmented training images
    ref = torch.stack([dm.train_eval_set[i][0] for i in i1[:4].tolist()])
    assert torch.equal(x1[:4], ref)
    with pytest.raises(ConfigError):
        dm.calibration_set(10**6, seed=0)


def test_limits_are_deterministic_and_mixed() -> None:
    dm = DigitsDataModule(test_limit=50, train_limit=100)
    dm.setup()
    assert len(dm.test_set) == 50 and len(dm.train_set) == 100
    labels = [dm.test_set[i][1] for i in range(50)]
    assert len(set(labels)) > 5
    again = DigitsDataModule(test_limit=50, seed=0)
    again.setup()
    assert labels == [again.test_set[i][1] for i in range(50)]


# -- CIFAR from an ImageFolder root ----------------------------------------------------------


def test_cifar_image_folder_and_cache(fake_cifar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = CIFARDataModule(root=str(fake_cifar), batch_size=8)
    dm.setup()
    assert dm.classes == [f"c{k:02d}" for k in range(10)]
    assert dm.train_set.images.shape == (30, 3, 32, 32) and dm.train_set.images.dtype == torch.uint8
    ref = torchvision.datasets.ImageFolder(str(fake_cifar / "train"))
    assert dm.train_set.labels.tolist() == ref.targets  # same order as ImageFolder
    first = torch.tensor(np.asarray(ref[1][0])).permute(2, 0, 1)
    assert torch.equal(dm.train_set.images[1], first)  # PNG decodes losslessly
    assert len(list(fake_cifar.glob(".adacal_cache_*.pt"))) == 2
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)
    assert len(dm.val_dataloader().dataset) == 20

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(cache_mod, "decode_images", no_decoding)
    again = CIFARDataModule(root=str(fake_cifar))
    again.setup()
    assert torch.equal(again.test_set.images, dm.test_set.images)
    images, labels, idx = again.calibration_set(5, seed=3)
    assert images.shape == (5, 3, 32, 32)
    assert torch.equal(labels, again.train_set.labels[idx])


def test_cache_without_file_and_separate_cache_dir(fake_cifar: Path, tmp_path: Path) -> None:
    data = build_image_cache(fake_cifar / "test", cache_dir=None, image_size=32)
    assert data.images.shape == (20, 3, 32, 32) and not list(fake_cifar.glob(".adacal_cache_*"))
    dm = CIFARDataModule(root=str(fake_cifar), cache_dir=str(tmp_path))
    dm.setup()
    assert len(list(tmp_path.glob(".adacal_cache_*.pt"))) == 2
    assert not list(fake_cifar.glob(".adacal_cache_*"))


def test_augmentation_on_uint8_tensors() -> None:
    torch.manual_seed(0)
    x = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8)
    crops = [random_crop(x, 4) for _ in range(20)]
    assert all(c.shape == x.shape for c in crops)
    assert any((c == 0).any() for c in crops)  # some crops reach into the zero padding
    holed = cutout(x.float(), 8)
    assert (holed == 0).sum() >= 3 * 16 and (holed == 0).sum() <= 3 * 64
    tf = TensorTransform((0.5,) * 3, (0.25,) * 3, train=True, autoaugment=True, cutout=16)
    out = tf(x)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    plain = TensorTransform((0.5,) * 3, (0.25,) * 3, train=False, crop_padding=4, flip=True)
    assert torch.allclose(plain(x), (x.float() / 255 - 0.5) / 0.25)


def test_autoaugment_cutout_loader(fake_cifar: Path) -> None:
    dm = CIFARDataModule(
        root=str(fake_cifar), batch_size=10, augment={"autoaugment": True, "cutout": 8}
    )
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (10, 3, 32, 32) and torch.isfinite(x).all()


# -- errors ---------------------------------------------------------------------------------


def test_bad_roots_name_dataset_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(root=str(tmp_path / "missing")).setup()
    assert err.value.key == "dataset.root" and "does not exist" in str(err.value)
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(root=None).setup()
    assert err.value.key == "dataset.root" and "dataset.root=<folder" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(root=str(tmp_path / "empty")).setup()
    assert err.value.key == "dataset.root" and "train/<class>/" in str(err.value)
    with pytest.raises(ConfigError) as err:
        ImageNetDataModule(root=str(tmp_path / "empty")).setup()
    assert err.value.key == "dataset.root" and "val/<wnid>" in str(err.value)


def test_nested_root_hint(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "cifar10", per_class=(1, 1))
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(root=str(tmp_path)).setup()
    assert f"dataset.root={tmp_path / 'cifar10'}" in str(err.value)


def test_download_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setitem(cifar_mod.TORCHVISION, 10, (offline, "cifar-10-batches-py"))
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(root=str(tmp_path / "dl"), download=True).setup()
    assert err.value.key == "dataset.root"
    assert "pass dataset.root=<folder with train/<class>/ and test/<class>/>" in str(err.value)
    assert "cifar10-jpeg.tar.gz" in str(err.value)


def test_class_count_and_option_errors(fake_cifar: Path) -> None:
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(num_classes=100, root=str(fake_cifar)).setup()
    assert err.value.key == "dataset.num_classes"
    with pytest.raises(ConfigError) as err:
        CIFARDataModule(root=str(fake_cifar), augment={"mixup": True})
    assert err.value.key == "dataset.augment.mixup"
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(test_limit=0).setup()
    assert err.value.key == "dataset.test_limit"


# -- Hydra configs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "cifar10", "cifar100", "imagenet"])
def test_dataset_configs_instantiate(name: str, fake_cifar: Path) -> None:
    yaml = OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml")
    cfg = OmegaConf.create({"paths": {"data_dir": "data"}, "dataset": yaml})
    assert cfg.dataset.name == name
    for key in ("num_classes", "in_channels", "image_size", "root", "download", "batch_size"):
        assert key in cfg.dataset
    assert set(cfg.dataset.augment) == {"crop_padding", "flip", "autoaugment", "cutout"}
    dm = instantiate(cfg.dataset)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (
        cfg.dataset.num_classes,
        cfg.dataset.in_channels,
        cfg.dataset.image_size,
    )
    if name == "cifar10":
        cfg.dataset.root = str(fake_cifar)
        dm = instantiate(cfg.dataset)
        assert dm.calibration_set(4, 0)[0].shape == (4, 3, 32, 32)


# -- the real CIFAR-10 archive (../shared/data) ------------------------------------------------


@realdata("cifar10-jpeg.tar.gz")
def test_real_cifar10_archive(tmp_path: Path) -> None:
    with tarfile.open(SHARED_DATA / "cifar10-jpeg.tar.gz") as tar:  # the test split only
        members = [m for m in tar.getmembers() if m.name.startswith("cifar10/test/")]
        tar.extractall(tmp_path, members=members, filter="data")
    root = tmp_path / "cifar10"
    data = build_image_cache(root / "test", cache_dir=tmp_path)
    assert data.classes == CIFAR10_CLASSES
    assert data.images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    (root / "train").symlink_to(root / "test")  # stands in for the 50k training images
    dm = CIFARDataModule(root=str(root), cache_dir=str(tmp_path), test_limit=100)
    dm.setup()
    assert len(dm.test_set) == 100 and len({dm.test_set[i][1] for i in range(100)}) == 10
    images, _, _ = dm.calibration_set(256, seed=0)
    assert images.mean().abs() < 0.3 and 0.7 < images.std() < 1.3  # CIFAR-10 statistics fit
