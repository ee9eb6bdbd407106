"""PASCAL VOC 2012 semantic segmentation (21 classes; 1464 train, 1449 val; border 255 ignored).

Root layout (torchvision's ``VOCSegmentation``, i.e. ``VOCtrainval_11-May-2012.tar``
extracted into ``root``)::

    root/VOCdevkit/VOC2012/JPEGImages/<name>.jpg
    root/VOCdevkit/VOC2012/SegmentationClass/<name>.png      paletted ("P"): index = class id
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt

``root`` may also be the ``VOCdevkit`` or the ``VOC2012`` folder itself. ``download=true``
fetches the tar with torchvision when the files are missing.

``sbd_root`` (optional) adds the SBD annotations (Hariharan et al. 2011) in torchvision's
``SBDataset`` layout (``img/<name>.jpg``, ``cls/<name>.mat``, ``train.txt``, ``val.txt``; the
``benchmark_RELEASE/dataset`` folder of the SBD tarball): the SBD train+val images that are
not in VOC val are added to VOC train (VOC's own label maps are kept for images in both),
giving the usual 10,582-image "trainaug" set. SBD label maps have no 255 border.

Images are decoded once (uint8, RGB) and, with ``load_size``, resized (bilinear; labels
nearest) before augmentation. VOC images differ in size (at most 500x500), so evaluation pads
them to ``eval_size`` (``eval_mode: pad``) and training crops a fixed ``crop_size``. Held in
memory at the original size: about 2.2 GB for VOC train+val, about 7 GB more with SBD.
``train_limit`` / ``test_limit`` are applied before decoding (same images as the base's).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, read_file

from adacal.data.base import limit_indices
from adacal.data.segmentation import IGNORE_INDEX, SegmentationDataModule, as_size, resize_pair
from adacal.errors import ConfigError

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_PARTS = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")
SBD_PARTS = ("img", "cls", "train.txt", "val.txt")
TAR_NAME = "VOCtrainval_11-May-2012.tar"
ROOT_HINT = (
    "pass dataset.root=<folder holding VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,"
    f"ImageSets/Segmentation}}> (e.g. tar -xf {TAR_NAME} -C data/voc and dataset.root=data/voc)"
)
SBD_HINT = (
    "pass dataset.sbd_root=<SBD folder with img/, cls/, train.txt, val.txt> (the "
    "benchmark_RELEASE/dataset folder of benchmark.tgz), or dataset.sbd_root=null to train "
    "on VOC train only"
)


def find_voc_dir(root: Path) -> Path | None:
    """The ``VOC2012`` folder under ``root`` (``root``, ``root/VOC2012`` or
    ``root/VOCdevkit/VOC2012``), or None when none has the segmentation layout."""
    for path in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if all((path / part).is_dir() for part in VOC_PARTS):
            return path
    return None


def find_sbd_dir(root: Path) -> Path:
    """The SBD ``dataset`` folder under ``root``; ConfigError("dataset.sbd_root") otherwise."""
    for path in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if all((path / part).exists() for part in SBD_PARTS):
            return path
    raise ConfigError(
        "dataset.sbd_root",
        f"{root} has the wrong layout: expected {root}/{{img/,cls/,train.txt,val.txt}} "
        f"(found {_listing(root)}); {SBD_HINT}",
    )


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())[:8] if path.is_dir() else []


def read_names(path: Path, key: str, hint: str) -> list[str]:
    """Image names of a split file, one a line, in file order (duplicates dropped)."""
    if not path.is_file():
        raise ConfigError(key, f"{path} is missing; {hint}")
    names = [line.strip() for line in path.read_text().splitlines()]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise ConfigError(key, f"{path} lists no images; {hint}")
    return names


def decode_rgb(path: Path) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def read_voc_label(path: Path) -> Tensor:
    """A VOC label PNG as uint8 [H, W] of palette indices (class ids, 255 border)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ConfigError(
                "dataset.root",
                f"{path} is a {im.mode} image; VOC label maps are paletted PNGs whose indices "
                f"are the class ids (SegmentationClass/, not a colour rendering); {ROOT_HINT}",
            )
        return torch.from_numpy(np.array(im, dtype=np.uint8))


def read_sbd_label(path: Path) -> Tensor:
    """An SBD ``cls/<name>.mat`` as uint8 [H, W] class ids (``GTcls.Segmentation``)."""
    from scipy.io import loadmat

    try:
        seg = loadmat(str(path))["GTcls"][0]["Segmentation"][0]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ConfigError(
            "dataset.sbd_root", f"{path} holds no GTcls.Segmentation ({exc}); {SBD_HINT}"
        ) from exc
    return torch.from_numpy(np.ascontiguousarray(seg, dtype=np.uint8))


def load_pairs(
    pairs: list[tuple[Path, Path]],
    read_label: Any,
    key: str,
    hint: str,
    load_size: tuple[int, int] | None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Decode (image, label) files: uint8 images [3, H, W], label maps [H, W] (0-20, 255)."""
    images, labels = [], []
    for image_path, label_path in pairs:
        for path in (image_path, label_path):
            if not path.is_file():
                raise ConfigError(key, f"{path} is missing; {hint}")
        image, label = decode_rgb(image_path), read_label(label_path)
        if tuple(label.shape) != tuple(image.shape[-2:]):
            raise ConfigError(
                key, f"{label_path} is {tuple(label.shape)}, its image {tuple(image.shape)}"
            )
        bad = (label >= len(CLASSES)) & (label != IGNORE_INDEX)
        if bool(bad.any()):
            raise ConfigError(
                key,
                f"{label_path} holds label {int(label[bad][0])}; VOC label maps hold 0-"
                f"{len(CLASSES) - 1} and {IGNORE_INDEX} (border); {hint}",
            )
        if load_size is not None:
            image, label = resize_pair(image, label, load_size)
        images.append(image)
        labels.append(label)
    return images, labels


class VOCDataModule(SegmentationDataModule):
    """VOC 2012 from ``root``: trains on ``train`` (+ SBD with ``sbd_root``), evaluates on
    ``val``. ``download`` fetches the VOC tar with torchvision when the files are missing."""

    name = "voc2012"

    def __init__(
        self,
        root: str | None = None,
        download: bool = False,
        sbd_root: str | None = None,
        num_classes: int = len(CLASSES),
        load_size: Any = None,
        name: str | None = None,
        epochs: int | None = None,  # the recipe's training length (read by the trainer config)
        in_channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_classes) != len(CLASSES):
            raise ConfigError(
                "dataset.num_classes",
                f"PASCAL VOC 2012 has {len(CLASSES)} classes (background + 20), got {num_classes}",
            )
        if root is None:
            raise ConfigError("dataset.root", f"not set; {ROOT_HINT}")
        self.num_classes = len(CLASSES)
        self.class_names = list(CLASSES)
        self.root = Path(root).expanduser()
        self.download = bool(download)
        self.sbd_root = None if sbd_root is None else Path(sbd_root).expanduser()
        self.load_size = as_size(load_size, "dataset.load_size")
        # the files are looked for (and fetched) in prepare_data / setup, so the config builds
        # without the data

    def _voc_dir(self) -> Path:
        """The VOC2012 folder (downloading it with ``download``); ConfigError otherwise."""
        found = find_voc_dir(self.root)
        if found is not None:
            return found
        if self.download:
            self._fetch()
            found = find_voc_dir(self.root)
            if found is not None:
                return found
        expected = self.root / "VOCdevkit" / "VOC2012"
        how = (
            "the download did not produce it"
            if self.download
            else "set dataset.download=true to fetch it with torchvision (needs network)"
        )
        raise ConfigError(
            "dataset.root",
            f"{self.root} has the wrong layout: expected {expected}/{{JPEGImages,"
            f"SegmentationClass,ImageSets/Segmentation}}/ (or dataset.root pointing at "
            f"VOCdevkit/ or VOC2012/ itself; found {_listing(self.root)}); {ROOT_HINT}, or {how}",
        )

    def _fetch(self) -> None:
        from torchvision import datasets

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            datasets.VOCSegmentation(str(self.root), year="2012", image_set="train", download=True)
        except Exception as exc:  # no network, server down, bad checksum, disk full
            raise ConfigError(
                "dataset.download",
                f"could not download VOC 2012 into {self.root} ({type(exc).__name__}: {exc}); "
                f"get {TAR_NAME} elsewhere, extract it and set dataset.download=false with "
                f"dataset.root=<folder holding VOCdevkit/>",
            ) from exc

    def prepare_data(self) -> None:
        if self.download:
            self._voc_dir()

    def _load(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        voc = self._voc_dir()
        splits = voc / "ImageSets" / "Segmentation"
        train = read_names(splits / "train.txt", "dataset.root", ROOT_HINT)
        val = read_names(splits / "val.txt", "dataset.root", ROOT_HINT)

        def voc_pair(n: str) -> tuple[Path, Path]:
            return voc / "JPEGImages" / f"{n}.jpg", voc / "SegmentationClass" / f"{n}.png"

        pairs = [("voc", voc_pair(n)) for n in train]
        if self.sbd_root is not None:
            sbd = find_sbd_dir(self.sbd_root)
            names = read_names(sbd / "train.txt", "dataset.sbd_root", SBD_HINT)
            names += read_names(sbd / "val.txt", "dataset.sbd_root", SBD_HINT)
            skip = set(val) | set(train)
            extra = [n for n in dict.fromkeys(names) if n not in skip]
            pairs += [("sbd", (sbd / "img" / f"{n}.jpg", sbd / "cls" / f"{n}.mat")) for n in extra]
        test_pairs = [voc_pair(n) for n in val]
        # apply train_limit / test_limit before decoding, with the base's fixed permutation
        # (the base's own limit is then a no-op and selects the same images in the same order)
        idx = limit_indices(len(pairs), self.train_limit, "dataset.train_limit")
        if idx is not None:
            pairs = [pairs[i] for i in idx.tolist()]
        idx = limit_indices(len(test_pairs), self.test_limit, "dataset.test_limit")
        if idx is not None:
            test_pairs = [test_pairs[i] for i in idx.tolist()]

        train_x: list[Tensor] = []
        train_y: list[Tensor] = []
        for source, pair in pairs:
            if source == "voc":
                x, y = load_pairs([pair], read_voc_label, "dataset.root", ROOT_HINT, self.load_size)
            else:
                x, y = load_pairs(
                    [pair], read_sbd_label, "dataset.sbd_root", SBD_HINT, self.load_size
                )
            train_x += x
            train_y += y
        test_x, test_y = load_pairs(
            test_pairs, read_voc_label, "dataset.root", ROOT_HINT, self.load_size
        )
        return train_x, train_y, test_x, test_y
