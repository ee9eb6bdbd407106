"""Training data path throughput: the per-image DataLoader against the batched device loader.

    python benchmarks/data_path.py --root data/cifar10 [--batches 40] [--batch 512]

Both paths deliver the same augmentation (crop with 4 px padding, flip, Cutout 8) of the
same uint8 CIFAR-10 training tensor; each row is images per second over ``--batches``
batches after one warm-up batch, measured one after the other in one run. On a GPU the
per-image path also pays the host-to-device copy (pinned memory), as in training.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from adacal.data.base import TensorImageDataset
from adacal.data.batch_augment import BatchAugment
from adacal.data.cifar import CIFARDataModule
from adacal.data.device_loader import DeviceBatches
from adacal.data.transforms import TensorTransform

AUGMENT = {"crop_padding": 4, "flip": True, "cutout": 8}


def rate(batches, n: int, device: torch.device) -> float:
    """Images per second over ``n`` batches of the iterable (after one warm-up batch)."""
    it = iter(batches)
    x, _ = next(it)
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, images = time.perf_counter(), 0
    for _ in range(n):
        x, _ = next(it)
        x = x.to(device, non_blocking=True)
        images += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/cifar10")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    dm = CIFARDataModule(root=args.root)
    dm.setup()
    x, y = TensorImageDataset.tensors(dm.train_set)
    per_image = TensorImageDataset(x, y, TensorTransform(dm.mean, dm.std, train=True, **AUGMENT))
    rows = []
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        device = torch.device(dev)
        loader = DataLoader(
            per_image,
            batch_size=args.batch,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=dev == "cuda",
        )
        old = rate(loader, args.batches, device)
        batches = DeviceBatches(x, y, args.batch, BatchAugment(dm.mean, dm.std, **AUGMENT), dev)
        new = rate(batches, args.batches, device)
        rows.append((dev, old, new))
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, workers {args.workers}")
    print("| device | per-image DataLoader (img/s) | device loader (img/s) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for dev, old, new in rows:
        print(f"| {dev} | {old:,.0f} | {new:,.0f} | {new / old:.1f}x |")


if __name__ == "__main__":
    main()
