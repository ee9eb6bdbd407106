"""The device data path: batched crop / flip / Cutout against the per-image transforms, the
seeded epoch stream, sharding, and the datamodule switch (dataset.device_loader)."""

from __future__ import annotations

import pytest
import torch

from adacal.data.base import TensorImageDataset
from adacal.data.batch_augment import BatchAugment, crop_batch, cutout_batch, flip_batch
from adacal.data.device_loader import DeviceBatches
from adacal.data.digits import DigitsDataModule
from adacal.data.transforms import TensorTransform, cutout, normalise
from adacal.errors import ConfigError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def images(n: int = 6, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.randint(1, 256, (n, c, h, w), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_crop_batch_takes_each_samples_window_of_the_zero_padded_image(padding: int) -> None:
    x = images()
    i = torch.tensor([0, 2 * padding, padding, 1, 0, 2 * padding])
    j = torch.tensor([2 * padding, 0, padding, 0, 1, 2 * padding])
    out = crop_batch(x, padding, i, j)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    for b in range(len(x)):
        want = padded[b, :, i[b] : i[b] + 8, j[b] : j[b] + 8]
        assert torch.equal(out[b], want)
    # the centre offset is the identity; the zero fill shows at the border of a corner crop
    assert torch.equal(out[2], x[2])
    assert (out[0, :, :padding, :] == 0).all() and (out[0, :, :, -padding:] == 0).all()


def test_flip_batch_flips_exactly_the_chosen_samples() -> None:
    x = images()
    mask = torch.tensor([True, False, True, False, False, True])
    out = flip_batch(x, mask)
    for b in range(len(x)):
        assert torch.equal(out[b], x[b].flip(-1) if mask[b] else x[b])


@pytest.mark.parametrize("size", [1, 3, 4])
def test_cutout_batch_equals_the_per_image_cutout_for_the_same_centre(size: int) -> None:
    x = normalise(images(), torch.tensor(MEAN).view(-1, 1, 1), torch.tensor(STD).view(-1, 1, 1))
    refs, centres = [], []
    for b in range(len(x)):  # transforms.cutout draws (cy, cx) from torch's global RNG
        torch.manual_seed(100 + b)
        centres.append((int(torch.randint(0, 8, (1,))), int(torch.randint(0, 8, (1,)))))
        torch.manual_seed(100 + b)
        refs.append(cutout(x[b], size))
    cy, cx = (torch.tensor(c) for c in zip(*centres, strict=True))
    out = cutout_batch(x, size, cy, cx)
    assert torch.equal(out, torch.stack(refs))
    full = cutout_batch(x, size, torch.tensor([4] * 6), torch.tensor([4] * 6))
    zeroed = (full == 0).all(dim=1).sum(dim=(1, 2))
    assert zeroed.tolist() == [size * size] * 6  # an interior centre zeroes a full square


def test_eval_batches_equal_the_test_time_transform() -> None:
    x = images()
    batch = BatchAugment(MEAN, STD, train=False)(x)
    single = TensorTransform(MEAN, STD, train=False)
    assert torch.allclose(batch, torch.stack([single(im) for im in x]), atol=0, rtol=0)


def test_training_batches_are_one_of_the_per_image_transforms_outcomes() -> None:
    """Every augmented sample is the normalised crop (at some offset), flipped or not: the
    same set of outcomes the per-image transform draws from."""
    x = images(n=32)
    aug = BatchAugment(MEAN, STD, train=True, crop_padding=2, flip=True)
    out = aug(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == torch.float32
    offsets = [(i, j) for i in range(5) for j in range(5)]
    seen_flip = set()
    for b in range(len(x)):
        outcomes = {}
        for i, j in offsets:
            crop = crop_batch(x[b : b + 1], 2, torch.tensor([i]), torch.tensor([j]))
            for f in (False, True):
                im = crop.flip(-1) if f else crop
                outcomes[(i, j, f)] = aug.normalise(im)[0]
        matches = [k for k, v in outcomes.items() if torch.equal(v, out[b])]
        assert matches, f"sample {b} is no crop/flip of its image"
        seen_flip.update(k[2] for k in matches)
    assert seen_flip == {False, True}  # 32 fair coin flips: both outcomes occur


def test_value_range_and_padding_fill_after_normalising() -> None:
    x = torch.full((64, 3, 8, 8), 255, dtype=torch.uint8)
    out = BatchAugment(MEAN, STD, train=True, crop_padding=4)(x, torch.Generator().manual_seed(0))
    lo = (0.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    hi = (1.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    values = out.permute(1, 0, 2, 3).reshape(3, -1)
    for c in range(3):  # only the image value and the zero padding (black) can appear
        assert set(values[c].unique().tolist()) <= {float(lo[c]), float(hi[c])}
    assert (values == lo.view(3, 1)).any()  # some crop reached into the padding


def test_epoch_stream_is_a_pure_function_of_seed_and_epoch() -> None:
    x, y = images(n=20), torch.arange(20)
    aug = BatchAugment(MEAN, STD, train=True, crop_padding=2, flip=True, cutout=3)
    epoch = [0]

    def batches(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(DeviceBatches(x, y, 8, aug, seed=seed, epoch=lambda: epoch[0]))

    a, b = batches(0), batches(0)
    assert len(a) == 3 and [len(t[1]) for t in a] == [8, 8, 4]
    assert all(
        torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True)
    )
    assert sorted(torch.cat([t[1] for t in a]).tolist()) == list(range(20))  # a permutation
    epoch[0] = 1
    c = batches(0)
    assert not torch.equal(torch.cat([t[1] for t in a]), torch.cat([t[1] for t in c]))
    assert not torch.equal(a[0][0], batches(1)[0][0])
    # per-sample randomness: identical images in one batch get different augmentations
    same = DeviceBatches(x[:1].repeat(16, 1, 1, 1), y[:16], 16, aug, seed=0)
    first = next(iter(same))[0]
    assert len({tuple(im.flatten().tolist()) for im in first}) > 4


def test_shards_split_the_epoch_like_a_distributed_sampler_without_padding() -> None:
    x, y = images(n=11), torch.arange(11)
    aug = BatchAugment(MEAN, STD, train=False)
    shards = [
        torch.cat([t[1] for t in DeviceBatches(x, y, 4, aug, rank=r, world_size=2, seed=5)])
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_datamodule_switch_gives_device_batches_with_the_same_test_images() -> None:
    dm = DigitsDataModule(batch_size=64, eval_batch_size=100, test_limit=150, device_loader=True)
    assert dm.uses_device_loader()  # true: also on the CPU
    val = list(dm.val_dataloader())
    xs, ys = torch.cat([b[0] for b in val]), torch.cat([b[1] for b in val])
    ref = [dm.test_set[i] for i in range(len(dm.test_set))]
    assert torch.equal(xs, torch.stack([r[0] for r in ref]))
    assert ys.tolist() == [r[1] for r in ref]
    train = dm.train_dataloader()
    assert isinstance(train, DeviceBatches) and len(train) == -(-len(dm.train_set) // 64)
    auto = DigitsDataModule(device_loader="auto")
    assert not auto.uses_device_loader()  # no GPU trainer attached
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(device_loader="yes")
    assert err.value.key == "dataset.device_loader"


def test_only_tensor_backed_sets_can_move_to_the_device() -> None:
    with pytest.raises(ConfigError) as err:
        TensorImageDataset.tensors([(torch.zeros(3, 2, 2), 0)])
    assert err.value.key == "dataset.device_loader"
