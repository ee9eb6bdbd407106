"""Segmentation data: CamVid and VOC loaders on tiny fake folders, SegTransform, config errors.

Everything is made in ``tmp_path`` with PIL / scipy (CPU, no network, a few seconds)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adacal.data.base import limit_indices
from adacal.data.camvid import CamVidDataModule
from adacal.data.segmentation import IGNORE_INDEX, SegTransform
from adacal.data.voc import CLASSES, VOCDataModule
from adacal.errors import ConfigError

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # normalised = uint8 / 255


def raw(x: torch.Tensor) -> torch.Tensor:
    """Undo the RAW normalisation: float [3, H, W] -> the uint8 values as long."""
    return (x * 255).round().long()


def write_jpeg(path: Path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def write_palette_png(path: Path, label: np.ndarray) -> None:
    """A VOC-style label map: paletted ("P") PNG whose indices are the class ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    palette = np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8)
    im.putpalette(palette.tolist())
    im.save(path)


# --- CamVid -------------------------------------------------------------------------------


def make_camvid(root: Path, counts=(("train", 2), ("val", 1), ("test", 2)), size=(24, 32)):
    """CamVid layout: <split>/<name>.jpg and <split>annot/<name>.png (0-10, 11 void)."""
    h, w = size
    labels = {}
    for k, (split, n) in enumerate(counts):
        for i in range(n):
            name = f"{split}_{i:03d}"
            write_jpeg(root / split / f"{name}.jpg", h, w, seed=10 * k + i)
            label = ((np.arange(h * w) + i + k) % 12).reshape(h, w).astype(np.uint8)
            (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
            Image.fromarray(label, mode="L").save(root / f"{split}annot" / f"{name}.png")
            labels.setdefault(split, []).append(label)
    return labels


def test_camvid_reads_fake_layout(tmp_path):
    labels = make_camvid(tmp_path)
    dm = CamVidDataModule(root=str(tmp_path), crop_size=[16, 16])
    dm.setup()
    assert (len(dm.train_set), len(dm.train_eval_set), len(dm.test_set)) == (2, 2, 2)
    assert dm.num_classes == 11 and len(dm.class_names) == 11
    for ds, split in ((dm.train_eval_set, "train"), (dm.test_set, "test")):
        for i, expected in enumerate(labels[split]):
            image, label = ds.images[i], ds.labels[i]
            assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 24, 32)
            assert label.dtype == torch.uint8 and tuple(label.shape) == (24, 32)
            want = torch.from_numpy(expected.copy())
            want[want == 11] = IGNORE_INDEX
            assert torch.equal(label, want)  # void 11 -> 255, 0..10 unchanged
            assert set(label.unique().tolist()) == set(range(11)) | {IGNORE_INDEX}
    x, y, idx = dm.calibration_set(2, seed=0)
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, 24, 32)
    assert y.dtype == torch.long and tuple(y.shape) == (2, 24, 32)
    assert sorted(idx.tolist()) == [0, 1]
    # training items are crops of crop_size
    image, label = dm.train_set[0]
    assert tuple(image.shape) == (3, 16, 16) and tuple(label.shape) == (16, 16)

    both = CamVidDataModule(root=str(tmp_path), train_splits=["train", "val"], load_size=[12, 16])
    both.setup()
    assert len(both.train_set) == 3 and len(both.test_set) == 2
    assert all(tuple(x.shape) == (3, 12, 16) for x in both.train_set.images)
    for label in both.train_set.labels:
        assert set(label.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}


def test_camvid_wrong_root(tmp_path):
    missing = CamVidDataModule(root=str(tmp_path / "missing"))  # the config builds without data
    with pytest.raises(ConfigError) as e:
        missing.setup()
    assert e.value.key == "dataset.root" and "camvid.tar.gz" in str(e.value)
    (tmp_path / "train").mkdir()  # no trainannot/
    dm = CamVidDataModule(root=str(tmp_path))
    with pytest.raises(ConfigError) as e:
        dm.setup()
    assert e.value.key == "dataset.root" and "trainannot" in str(e.value)
    with pytest.raises(ConfigError) as e:
        CamVidDataModule(root=str(tmp_path), num_classes=12)
    assert e.value.key == "dataset.num_classes"


def test_crop_larger_than_scaled_image_needs_pad(tmp_path):
    make_camvid(tmp_path)  # 24x32 images; scaled by 0.5 -> 12x16
    dm = CamVidDataModule(root=str(tmp_path), crop_size=[16, 16], scale=[0.5, 2.0], pad=False)
    with pytest.raises(ConfigError) as e:
        dm.setup()
    assert e.value.key == "dataset.crop_size" and "dataset.pad" in str(e.value)
    ok = CamVidDataModule(root=str(tmp_path), crop_size=[12, 16], scale=[0.5, 2.0], pad=False)
    ok.setup()
    assert tuple(ok.train_set[0][0].shape) == (3, 12, 16)


# --- VOC ----------------------------------------------------------------------------------

VOC_TRAIN = ["2007_000032", "2007_000039", "2008_000008"]
VOC_VAL = ["2007_000033", "2007_000042"]
SIZES = [(20, 28), (24, 32), (18, 30)]  # VOC images differ in size


def voc_label(h: int, w: int, seed: int) -> np.ndarray:
    """Class ids 0-20 with a 255 border ring, as in SegmentationClass/."""
    label = ((np.arange(h * w) + seed) % len(CLASSES)).reshape(h, w).astype(np.uint8)
    label[0, :] = label[-1, :] = label[:, 0] = label[:, -1] = IGNORE_INDEX
    return label


def make_voc(base: Path, train=VOC_TRAIN, val=VOC_VAL) -> dict[str, np.ndarray]:
    """base/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}."""
    voc = base / "VOCdevkit" / "VOC2012"
    labels = {}
    for i, name in enumerate([*train, *val]):
        h, w = SIZES[i % len(SIZES)]
        write_jpeg(voc / "JPEGImages" / f"{name}.jpg", h, w, seed=i)
        labels[name] = voc_label(h, w, seed=i)
        write_palette_png(voc / "SegmentationClass" / f"{name}.png", labels[name])
    splits = voc / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("\n".join(train) + "\n")
    (splits / "val.txt").write_text("\n".join(val) + "\n")
    return labels


@pytest.mark.parametrize("level", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_reads_fake_devkit(tmp_path, level):
    labels = make_voc(tmp_path)
    dm = VOCDataModule(
        root=str(tmp_path / level), crop_size=[16, 16], eval_size=[32, 40], eval_mode="pad"
    )
    assert dm.num_classes == 21 and dm.class_names == list(CLASSES)
    assert dm.class_names[0] == "background" and dm.class_names[-1] == "tvmonitor"
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (len(VOC_TRAIN), len(VOC_VAL))
    for ds, names in ((dm.train_eval_set, VOC_TRAIN), (dm.test_set, VOC_VAL)):
        for image, label, name in zip(ds.images, ds.labels, names, strict=True):
            assert image.dtype == torch.uint8 and image.shape[0] == 3
            assert tuple(image.shape[-2:]) == labels[name].shape
            assert label.dtype == torch.uint8
            assert torch.equal(label, torch.from_numpy(labels[name]))  # palette indices as-is
    # evaluation pads every image to eval_size: original pixels kept, padding ignored
    image, label = dm.test_set[0]
    h, w = labels[VOC_VAL[0]].shape
    assert tuple(image.shape) == (3, 32, 40) and label.dtype == torch.long
    assert torch.equal(label[:h, :w], torch.from_numpy(labels[VOC_VAL[0]]).long())
    assert (label[h:] == IGNORE_INDEX).all() and (label[:, w:] == IGNORE_INDEX).all()
    x, y, _ = dm.calibration_set(3, seed=1)
    assert tuple(x.shape) == (3, 3, 32, 40) and tuple(y.shape) == (3, 32, 40)
    assert tuple(dm.train_set[1][0].shape) == (3, 16, 16)


def test_voc_load_size_and_limits(tmp_path):
    labels = make_voc(tmp_path)
    dm = VOCDataModule(root=str(tmp_path), load_size=[16, 20])
    dm.setup()
    allowed = set(range(len(CLASSES))) | {IGNORE_INDEX}
    for image, label in zip(dm.train_set.images, dm.train_set.labels, strict=True):
        assert tuple(image.shape) == (3, 16, 20) and tuple(label.shape) == (16, 20)
        assert set(label.unique().tolist()) <= allowed
    # limits are applied before decoding but pick the same images as the base's permutation
    limited = VOCDataModule(root=str(tmp_path), train_limit=2, test_limit=1)
    limited.setup()
    assert (len(limited.train_set), len(limited.test_set)) == (2, 1)
    picked = [VOC_TRAIN[i] for i in limit_indices(len(VOC_TRAIN), 2, "k").tolist()]
    for label, name in zip(limited.train_set.labels, picked, strict=True):
        assert torch.equal(label, torch.from_numpy(labels[name]))


def make_sbd(root: Path, train: list[str], val: list[str]) -> dict[str, np.ndarray]:
    """torchvision SBDataset layout: img/<name>.jpg, cls/<name>.mat (GTcls struct)."""
    from scipy.io import savemat

    (root / "cls").mkdir(parents=True)
    segs = {}
    for i, name in enumerate(dict.fromkeys([*train, *val])):
        h, w = SIZES[(i + 1) % len(SIZES)]
        write_jpeg(root / "img" / f"{name}.jpg", h, w, seed=100 + i)
        seg = ((np.arange(h * w) * 7 + i) % len(CLASSES)).reshape(h, w).astype(np.uint8)
        boundaries = np.empty((len(CLASSES) - 1, 1), dtype=object)
        for c in range(len(CLASSES) - 1):
            boundaries[c, 0] = np.zeros((h, w), dtype=np.uint8)
        gt = {
            "Segmentation": seg,
            "Boundaries": boundaries,
            "CategoriesPresent": np.unique(seg[seg > 0])[:, None],
        }
        savemat(root / "cls" / f"{name}.mat", {"GTcls": gt})
        segs[name] = seg
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("\n".join(val) + "\n")
    return segs


@pytest.mark.parametrize("nested", [False, True])
def test_voc_sbd_trainaug(tmp_path, nested):
    labels = make_voc(tmp_path / "voc")
    sbd_root = tmp_path / "sbd"
    sbd_dir = sbd_root / "benchmark_RELEASE" / "dataset" if nested else sbd_root
    # SBD holds a VOC-train image (keeps VOC's label), two VOC-val images (excluded), two new
    segs = make_sbd(
        sbd_dir,
        train=[VOC_TRAIN[0], "2008_000100", VOC_VAL[0]],
        val=["2009_000200", VOC_VAL[1], "2008_000100"],
    )
    dm = VOCDataModule(root=str(tmp_path / "voc"), sbd_root=str(sbd_root))
    dm.setup()
    names = [*VOC_TRAIN, "2008_000100", "2009_000200"]
    assert len(dm.train_set) == len(names) and len(dm.test_set) == len(VOC_VAL)
    for i, name in enumerate(names):
        want = labels[name] if name in labels else segs[name]
        assert torch.equal(dm.train_set.labels[i], torch.from_numpy(want))
        assert tuple(dm.train_set.images[i].shape[-2:]) == want.shape
    assert not (dm.train_set.labels[-1] == IGNORE_INDEX).any()  # SBD: no border
    # the VOC-val images of SBD are not trained on: no SBD label of them appears
    for name in VOC_VAL:
        assert not any(
            lab.shape == segs[name].shape and torch.equal(lab, torch.from_numpy(segs[name]))
            for lab in dm.train_set.labels
        )


def setup_error(**kwargs) -> ConfigError:
    """The ConfigError of building a VOCDataModule and loading it (files are read in setup)."""
    dm = VOCDataModule(**kwargs)  # builds without touching the files
    with pytest.raises(ConfigError) as e:
        dm.setup()
    return e.value


def test_voc_wrong_roots(tmp_path):
    with pytest.raises(ConfigError) as e:
        VOCDataModule(root=None)
    assert e.value.key == "dataset.root"
    err = setup_error(root=str(tmp_path / "missing"))
    assert err.key == "dataset.root" and "dataset.download=true" in str(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    err = setup_error(root=str(empty))
    assert err.key == "dataset.root"
    assert "dataset.download=true" in str(err) and "VOCdevkit" in str(err)
    partial = tmp_path / "partial" / "VOCdevkit" / "VOC2012"
    (partial / "JPEGImages").mkdir(parents=True)
    (partial / "SegmentationClass").mkdir()
    err = setup_error(root=str(tmp_path / "partial"))
    assert err.key == "dataset.root" and "ImageSets/Segmentation" in str(err)
    make_voc(tmp_path / "voc")
    with pytest.raises(ConfigError) as e:
        VOCDataModule(root=str(tmp_path / "voc"), num_classes=20)
    assert e.value.key == "dataset.num_classes"
    err = setup_error(root=str(tmp_path / "voc"), sbd_root=str(empty))
    assert err.key == "dataset.sbd_root" and "cls/" in str(err)
    (tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{VOC_VAL[1]}.jpg").unlink()
    err = setup_error(root=str(tmp_path / "voc"))
    assert err.key == "dataset.root" and f"{VOC_VAL[1]}.jpg is missing" in str(err)


def test_voc_rejects_colour_label_maps(tmp_path):
    make_voc(tmp_path)
    png = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{VOC_TRAIN[0]}.png"
    h, w = SIZES[0]
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(png)  # an RGB rendering
    dm = VOCDataModule(root=str(tmp_path))
    with pytest.raises(ConfigError) as e:
        dm.setup()
    assert e.value.key == "dataset.root" and "paletted" in str(e.value)


def test_voc_download_offline_and_fetched(tmp_path, monkeypatch):
    from torchvision import datasets

    calls = []

    def offline(root, year, image_set, download):
        calls.append((root, year, image_set, download))
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(datasets, "VOCSegmentation", offline)
    dm = VOCDataModule(root=str(tmp_path / "voc"), download=True)  # no fetch in the constructor
    assert calls == []
    with pytest.raises(ConfigError) as e:
        dm.setup()
    assert e.value.key == "dataset.download" and "dataset.root" in str(e.value)
    assert calls == [(str(tmp_path / "voc"), "2012", "train", True)]

    def fetched(root, year, image_set, download):
        calls.append(image_set)
        make_voc(Path(root))

    monkeypatch.setattr(datasets, "VOCSegmentation", fetched)
    dm = VOCDataModule(root=str(tmp_path / "voc2"), download=True)
    dm.prepare_data()
    dm.setup()
    assert calls[1:] == ["train"]  # one download (the tar holds both splits)
    assert (len(dm.train_set), len(dm.test_set)) == (len(VOC_TRAIN), len(VOC_VAL))
    again = VOCDataModule(root=str(tmp_path / "voc2"), download=True)
    again.setup()
    assert calls[1:] == ["train"]  # present: no second download


# --- SegTransform -------------------------------------------------------------------------


def pattern(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image and label map whose values encode the column (and row), so flips show."""
    cols = torch.arange(w).expand(h, w)
    rows = torch.arange(h)[:, None].expand(h, w)
    image = (torch.stack([cols * 10, rows * 10, cols + rows]) % 256).to(torch.uint8)
    return image, (cols % 21).to(torch.uint8)


def test_train_crops_have_crop_size():
    torch.manual_seed(0)
    tf = SegTransform(**IMAGENET, train=True, crop_size=(16, 24), scale=(0.5, 2.0))
    for h, w in [(20, 30), (8, 10), (40, 50)]:
        image, label = pattern(h, w)
        for _ in range(10):
            x, y = tf(image, label)
            assert tuple(x.shape) == (3, 16, 24) and x.dtype == torch.float32
            assert tuple(y.shape) == (16, 24) and y.dtype == torch.long
            assert set(y.unique().tolist()) <= set(range(21)) | {IGNORE_INDEX}


def test_train_padding_is_ignored_and_mean_coloured():
    torch.manual_seed(0)
    image, label = pattern(10, 12)
    tf = SegTransform(**IMAGENET, train=True, crop_size=(16, 16), scale=(1.0, 1.0), flip=False)
    x, y = tf(image, label)
    assert torch.equal(y[:10, :12], label.long())
    assert (y[10:] == IGNORE_INDEX).all() and (y[:, 12:] == IGNORE_INDEX).all()
    assert x[:, 10:].abs().max() < 0.01 and x[:, :, 12:].abs().max() < 0.01  # mean -> ~0
    # a smaller scale pads too: the label keeps only valid ids and 255
    tf = SegTransform(**IMAGENET, train=True, crop_size=(16, 16), scale=(0.5, 0.5), flip=False)
    x, y = tf(image, label)
    assert (y[5:] == IGNORE_INDEX).all() and (y[:, 6:] == IGNORE_INDEX).all()
    assert (y[:5, :6] != IGNORE_INDEX).all()


def test_train_flip_moves_image_and_label_together():
    torch.manual_seed(0)
    image, label = pattern(6, 9)
    tf = SegTransform(**RAW, train=True, crop_size=None, scale=(1.0, 1.0), flip=True)
    seen = set()
    for _ in range(30):
        x, y = tf(image, label)
        flipped = torch.equal(y, label.flip(-1).long())
        assert flipped or torch.equal(y, label.long())
        want = image.flip(-1) if flipped else image
        assert torch.equal(raw(x), want.long())
        seen.add(flipped)
    assert seen == {True, False}
    no_flip = SegTransform(**RAW, train=True, crop_size=None, scale=(1.0, 1.0), flip=False)
    assert all(torch.equal(no_flip(image, label)[1], label.long()) for _ in range(10))


def test_eval_pad_keeps_pixels_and_ignores_padding():
    image, label = pattern(10, 12)
    label[0, 0] = IGNORE_INDEX
    tf = SegTransform(**RAW, train=False, eval_size=(16, 20), eval_mode="pad")
    x, y = tf(image, label)
    assert tuple(x.shape) == (3, 16, 20) and tuple(y.shape) == (16, 20)
    assert torch.equal(raw(x[:, :10, :12]), image.long())
    assert torch.equal(y[:10, :12], label.long())
    assert (y[10:] == IGNORE_INDEX).all() and (y[:, 12:] == IGNORE_INDEX).all()
    # no eval_size: unchanged size, identical pixels
    x, y = SegTransform(**RAW, train=False)(image, label)
    assert torch.equal(raw(x), image.long()) and torch.equal(y, label.long())


def test_eval_resize_uses_nearest_labels():
    image, label = pattern(10, 12)
    label[:3, :4] = IGNORE_INDEX
    label[5:, :] = 7
    tf = SegTransform(**IMAGENET, train=False, eval_size=(23, 17), eval_mode="resize")
    x, y = tf(image, label)
    assert tuple(x.shape) == (3, 23, 17) and tuple(y.shape) == (23, 17)
    assert set(y.unique().tolist()) <= set(label.unique().tolist())  # no blended labels
    assert IGNORE_INDEX in y.tolist()[0] and (y[-1] == 7).all()
