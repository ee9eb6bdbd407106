"""Event data: the emulator's equations, frame / voxel representations (against tonic), the
tonic-layout datamodules on tiny fake files, offline refusal, and the emulated CIFAR-10 events."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adacal.data.events import emulator as emu
from adacal.data.events.cifar10_events import CIFAR10EventsDataModule, emulate_frames
from adacal.data.events.emulator import EVENT_DTYPE, EmulatorConfig
from adacal.data.events.representation import (
    as_channels,
    frame_counts,
    resize_counts,
    to_frames,
    to_voxel_grid,
)
from adacal.data.events.tonic_datasets import (
    SOURCES,
    TonicEventDataModule,
    read_aedat_dvs128,
    split_per_class,
)
from adacal.errors import ConfigError

tonic = pytest.importorskip("tonic")


def pixel_ramp(values: list[float]) -> torch.Tensor:
    """Log frames ``[F, 1, 1, 1]`` (float64) of one pixel."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1, 1)


# -- the emulator ----------------------------------------------------------------------------


def test_static_image_gives_no_events():
    frames = torch.rand(1, 3, 8, 8, dtype=torch.float64).log().expand(9, 3, 8, 8)
    ev = emu.emulate(frames, torch.arange(9) * 100, 0.1, 0.1)
    assert len(ev.t) == 0
    still = EmulatorConfig(radius=0.0, mismatch=0.0)  # no motion: the sensor sees a still image
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert len(emu.emulate_images(images, still).t) == 0


def test_brightening_gives_on_and_darkening_off_events():
    up = emu.emulate(pixel_ramp([0.0, 0.25, 0.5, 0.78]), torch.tensor([0, 10, 20, 30]), 0.1, 0.1)
    down = emu.emulate(pixel_ramp([0.0, -0.25, -0.55]), torch.tensor([0, 10, 20]), 0.1, 0.1)
    assert len(up.p) == 7 and bool((up.p == 1).all())  # floor(0.78 / 0.1)
    assert len(down.p) == 5 and bool((down.p == 0).all())  # floor(0.55 / 0.1)


@pytest.mark.parametrize("threshold", [0.1, 0.05, 0.025])
def test_event_count_and_times_on_a_linear_log_ramp(threshold):
    """L(t) = a·t over [0, D]: exactly floor(a·D / C) ON events, the i-th at t = i·C/a
    (interpolation is exact on a line), whatever the frame sampling; halving C doubles them."""
    rise, duration, frames = 1.03, 100_000, 17
    times = torch.arange(frames) * (duration // (frames - 1))
    log = pixel_ramp((rise * times.double() / duration).tolist())
    ev = emu.emulate(log, times, threshold, threshold)
    expected = math.floor(rise / threshold)
    assert len(ev.t) == expected and bool((ev.p == 1).all())
    i = torch.arange(1, expected + 1, dtype=torch.float64)
    exact = i * threshold * duration / rise
    assert torch.all((ev.t.double() - exact).abs() <= 1.0)
    assert torch.equal(ev.t, ev.t.sort().values)


def test_reference_moves_by_threshold_and_reversal_emits_off():
    """Up by 0.35 (3 ON at C = 0.1, L_ref = 0.3), back to 0.05: L_ref − L = 0.25 -> 2 OFF."""
    ev = emu.emulate(pixel_ramp([0.0, 0.35, 0.05]), torch.tensor([0, 10, 20]), 0.1, 0.1)
    assert ev.p.tolist() == [1, 1, 1, 0, 0]
    assert torch.all(ev.t[:3] < 10) and torch.all(ev.t[3:] >= 10)


def test_threshold_mismatch_is_seeded_per_sensor():
    cfg = EmulatorConfig(threshold=0.2, mismatch=0.1, seed=3)
    a_on, a_off = emu.threshold_maps((64, 64), cfg)
    b_on, _ = emu.threshold_maps((64, 64), cfg)
    c_on, _ = emu.threshold_maps((64, 64), EmulatorConfig(threshold=0.2, mismatch=0.1, seed=4))
    assert torch.equal(a_on, b_on) and not torch.equal(a_on, c_on)
    assert not torch.equal(a_on, a_off)
    assert abs(a_on.mean().item() - 0.2) < 0.005 and abs(a_on.std().item() - 0.02) < 0.003
    flat_on, _ = emu.threshold_maps((4, 4), EmulatorConfig(mismatch=0.0))
    assert bool((flat_on == 0.2).all())


def test_structured_output_is_tonics_and_sorted():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    events = emu.to_structured(emu.emulate_images(images, EmulatorConfig()), image=1)
    assert events.dtype == tonic.io.events_struct == EVENT_DTYPE
    assert events.dtype.names == ("x", "y", "t", "p") and len(events) > 100
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["x"].max() < 16 and events["y"].max() < 16 and events["t"].max() < 100_000
    frames = tonic.transforms.ToFrame(sensor_size=(16, 16, 2), n_time_bins=4)(events)
    assert frames.shape == (4, 2, 16, 16) and 0 < frames.sum() <= len(events)


def test_circle_path_is_closed_and_translate_shifts():
    path = emu.circle_path(8, 1.5)
    assert torch.allclose(path[0], path[-1], atol=1e-12) and torch.equal(path[0], torch.zeros(2))
    assert torch.allclose(path.norm(dim=1).max(), torch.tensor(3.0, dtype=torch.float64))
    img = torch.rand(2, 6, 7, dtype=torch.float64)
    offsets = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.3, -0.6]], dtype=torch.float64)
    out = emu.translate(img, offsets)
    assert torch.equal(out[0], img)
    assert torch.equal(out[1][:, :, 1:], img[:, :, :-1])  # content moves right by one pixel
    assert torch.equal(out[1][:, :, 0], img[:, :, 0])  # the border is repeated
    grid_x = torch.arange(7.0, dtype=torch.float64) - 0.3
    grid_y = torch.arange(6.0, dtype=torch.float64) + 0.6
    gy, gx = torch.meshgrid(grid_y, grid_x, indexing="ij")
    grid = torch.stack([2 * gx / 6 - 1, 2 * gy / 5 - 1], -1)[None].expand(2, 6, 7, 2)
    ref = F.grid_sample(img[:, None], grid, padding_mode="border", align_corners=True)[:, 0]
    assert torch.allclose(out[2], ref, atol=1e-12)


def test_fast_frame_path_equals_binned_events():
    cfg = EmulatorConfig(steps=8, duration_us=8000, mismatch=0.05)
    images = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    fast = emulate_frames(images, cfg, n_bins=4)
    ev = emu.emulate_images(images, cfg)
    slow = frame_counts(*ev, 3, (12, 12), 4, 0, cfg.duration_us)
    assert torch.equal(fast, slow) and fast.sum() == len(ev.t) > 0
    odd = emulate_frames(images, cfg, n_bins=3)  # 8 steps do not split in 3: the event path
    assert odd.shape == (3, 3, 2, 12, 12) and odd.sum() == len(ev.t)


# -- representations -------------------------------------------------------------------------


def make_events(n: int, size: tuple[int, int], duration: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, size[0], n), rng.integers(0, size[1], n)
    ev["t"] = np.sort(rng.integers(0, duration, n))
    ev["t"][0], ev["t"][-1] = 0, duration  # span exactly [0, duration]
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


def test_frames_shape_polarity_and_total():
    ev = make_events(500, (10, 6), 8000)
    frames = to_frames(ev, (10, 6, 2), 4)
    assert frames.shape == (4, 2, 6, 10)
    assert frames.sum() == 500
    assert frames[:, 1].sum() == ev["p"].sum() and frames[:, 0].sum() == (~ev["p"]).sum()
    channels = as_channels(torch.from_numpy(frames)[None])
    assert channels.shape == (1, 8, 6, 10) and torch.equal(
        channels[0, 3], torch.from_numpy(frames[1, 1])
    )


def test_frames_agree_with_tonic_except_its_dropped_tail():
    """tonic bins [t0 + i·w, t0 + (i+1)·w) with w = D // N and drops t >= t0 + N·w: with D a
    multiple of N that is just the events at t = D, which we keep in the last bin."""
    ev = make_events(400, (8, 8), 8000, seed=1)
    ours = to_frames(ev, (8, 8, 2), 4)
    theirs = tonic.transforms.ToFrame(sensor_size=(8, 8, 2), n_time_bins=4)(ev)
    tail = ev[ev["t"] == 8000]
    theirs_plus_tail = theirs.astype(np.int64)
    np.add.at(theirs_plus_tail, (3, tail["p"].astype(int), tail["y"], tail["x"]), 1)
    assert np.array_equal(ours, theirs_plus_tail)


def test_voxel_grid_shape_and_signed_total():
    ev = make_events(300, (5, 4), 1000, seed=2)
    grid = to_voxel_grid(ev, (5, 4, 2), 3)
    assert grid.shape == (3, 4, 5)
    assert math.isclose(grid.sum(), int(ev["p"].sum()) - int((~ev["p"]).sum()), abs_tol=1e-9)
    first = ev[:1].copy()
    one = to_voxel_grid(np.concatenate([first, ev[-1:]]), (5, 4, 2), 3)
    sign = 1.0 if first["p"][0] else -1.0
    assert one[0, first["y"][0], first["x"][0]] == pytest.approx(sign)  # t0 -> bin 0, weight 1


def test_resize_keeps_totals_when_shrinking_and_pads_to_square():
    counts = torch.randint(0, 5, (2, 4, 180, 240)).float()
    small = resize_counts(counts, 60)  # 240x240 padded, 4x4 areas summed
    assert small.shape == (2, 4, 60, 60)
    assert torch.allclose(small.sum(dim=(2, 3)), counts.sum(dim=(2, 3)))
    assert small[:, :, :7].sum() == 0 and small[:, :, -7:].sum() == 0  # 30 padded rows each side
    big = resize_counts(torch.ones(1, 1, 4, 4), 8)
    assert torch.equal(big, torch.ones(1, 1, 8, 8))  # nearest: per-pixel counts kept


# -- tonic-layout data sets on tiny fake files -----------------------------------------------


def write_aedat_dvs128(path: Path, x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray):
    """AEDAT 2.0 with the address coding SpikingJelly decodes (x = 127 − y_raw, ...)."""
    x_raw, y_raw, p_raw = 127 - y, 127 - x, 1 - p
    addr = (x_raw << 1) | (y_raw << 8) | p_raw
    data = np.stack([addr, t], axis=1).astype(">u4").tobytes()
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a fake file\r\n" + data)


def fake_cifar10_dvs(root: Path, per_class: int = 10) -> None:
    rng = np.random.default_rng(0)
    for c in SOURCES["cifar10_dvs"].folders[:1]:
        for k, name in enumerate(tonic.datasets.CIFAR10DVS.classes):
            folder = root / c / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                n = 50
                x, y = rng.integers(0, 128, n), rng.integers(0, 128, n)
                t, p = np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n)
                x[0] = k  # the class leaves a mark: pixel (k, 0) fires first
                y[0] = 0
                write_aedat_dvs128(folder / f"cifar10_{name}_{i}.aedat", x, y, t, p)


def test_aedat_dvs128_reader_decodes_spikingjelly_orientation(tmp_path):
    x, y = np.array([0, 5, 127]), np.array([3, 100, 127])
    t, p = np.array([1, 20, 300]), np.array([1, 0, 1])
    write_aedat_dvs128(tmp_path / "a.aedat", x, y, t, p)
    ev = read_aedat_dvs128(tmp_path / "a.aedat")
    assert ev.dtype == EVENT_DTYPE
    assert ev["x"].tolist() == [0, 5, 127] and ev["y"].tolist() == [3, 100, 127]
    assert ev["t"].tolist() == [1, 20, 300] and ev["p"].tolist() == [True, False, True]


def dvs_module(root: Path, **kw) -> TonicEventDataModule:
    args = dict(name="cifar10_dvs", num_classes=10, in_channels=4, image_size=16, n_bins=2,
                root=str(root), batch_size=8, device_loader=False)  # fmt: skip
    return TonicEventDataModule(**{**args, **kw})


def test_cifar10_dvs_seeded_split_frames_and_cache(tmp_path, monkeypatch):
    fake_cifar10_dvs(tmp_path)
    dm = dvs_module(tmp_path)
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (90, 10)  # ceil(0.9 · 10) per class
    x, y = dm.train_eval_set[0]
    assert x.shape == (4, 16, 16) and x.dtype == torch.float32
    images, labels = dm.train_set.images, dm.train_set.labels
    assert images.dtype == torch.uint8 and int(images.sum(dtype=torch.long)) == 90 * 50
    assert torch.bincount(dm.test_set.labels).tolist() == [1] * 10
    assert dm.classes == sorted(tonic.datasets.CIFAR10DVS.classes)
    record = json.loads((tmp_path / "cifar10_dvs_split_0.json").read_text())
    assert len(record["test"]) == 10 and record["test"][0].endswith(".aedat")
    assert len(list(tmp_path.glob(".adacal_events_cifar10_dvs_all_*.pt"))) == 1
    # the second setup reads the cache (no decoding), the same seed gives the same split
    monkeypatch.setitem(SOURCES["cifar10_dvs"].readers, ".aedat", None)
    again = dvs_module(tmp_path)
    again.setup()
    assert torch.equal(again.test_set.images, dm.test_set.images)
    assert torch.equal(labels, again.train_set.labels)
    other = dvs_module(tmp_path, split_seed=1)
    other.setup()
    assert not torch.equal(other.test_set.images, dm.test_set.images)


def test_split_per_class_keeps_ninety_percent_of_each_class():
    labels = torch.tensor([0] * 20 + [1] * 11 + [2] * 3)
    train, test = split_per_class(labels, 0.1, seed=0)
    assert torch.bincount(labels[train]).tolist() == [18, 10, 3]
    assert sorted(train.tolist() + test.tolist()) == list(range(34))
    ordered, _ = split_per_class(labels, 0.1, seed=None)
    assert ordered[:18].tolist() == list(range(18))  # file order: the first 90 % of the class


def test_aedat4_goes_through_tonics_reader(tmp_path, monkeypatch):
    folder = tmp_path / "CIFAR10DVS"
    for name in tonic.datasets.CIFAR10DVS.classes:
        (folder / name).mkdir(parents=True)
        (folder / name / "0.aedat4").write_bytes(b"fake")
    seen = []

    def fake_read(path):
        seen.append(path)
        ev = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "?")])
        ev["t"], ev["x"], ev["y"], ev["on"] = [0, 5, 10], [1, 2, 3], [4, 5, 6], [1, 0, 1]
        return ev

    monkeypatch.setattr(tonic.io, "read_aedat4", fake_read)
    dm = dvs_module(tmp_path, test_fraction=0.5, cache=False)
    dm.setup()
    assert len(seen) == 10 and len(dm.train_set) == 10 and len(dm.test_set) == 0
    assert int(dm.train_set.images.sum(dtype=torch.long)) == 30


def write_ncaltech_bin(path: Path, x, y, t, p) -> None:
    """N-MNIST / N-Caltech101 40-bit events: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    t = np.asarray(t)
    rows = np.stack([x, y, (np.asarray(p) << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(rows.T.astype(np.uint8).tobytes())


def test_ncaltech101_reads_tonic_layout(tmp_path):
    folder = tmp_path / "NCALTECH101" / "Caltech101"
    for c in ("accordion", "airplanes", "BACKGROUND_Google"):
        (folder / c).mkdir(parents=True)
        for i in range(4):
            write_ncaltech_bin(folder / c / f"image_{i:04d}.bin", [10, 20, 239], [5, 7, 179],
                               [0, 300, 70000], [1, 0, 1])  # fmt: skip
    dm = TonicEventDataModule("ncaltech101", num_classes=3, in_channels=2, n_bins=1,
                              image_size=60, root=str(tmp_path), cache=False,
                              device_loader=False)  # fmt: skip
    dm.setup()
    assert dm.classes == ["BACKGROUND_Google", "accordion", "airplanes"]
    assert (len(dm.train_set), len(dm.test_set)) == (12, 0)  # ceil(0.9 · 4) = 4
    frames = dm.train_set.images
    assert frames.shape == (12, 2, 60, 60) and int(frames[0].sum()) == 3
    assert frames[0, 1].sum() == 2 and frames[0, 0].sum() == 1  # ON, OFF channels
    bad = TonicEventDataModule("ncaltech101", num_classes=101, in_channels=2, n_bins=1,
                               image_size=60, root=str(tmp_path), cache=False)  # fmt: skip
    with pytest.raises(ConfigError) as err:
        bad.setup()
    assert err.value.key == "dataset.num_classes"


def test_dvs_gesture_official_split(tmp_path):
    for split, users in (("ibmGestureTrain", (1, 2)), ("ibmGestureTest", (24,))):
        for u in users:
            folder = tmp_path / "DVSGesture" / split / f"user{u:02d}_fluorescent"
            folder.mkdir(parents=True)
            for label in range(11):
                ev = np.array([[1, 2, 1, 0], [3, 4, 0, 6], [5, 6, 1, 12]], dtype=np.int64)
                np.save(folder / f"{label}.npy", ev)
    dm = TonicEventDataModule("dvs_gesture", num_classes=11, in_channels=6, n_bins=3,
                              image_size=128, root=str(tmp_path), cache=False,
                              device_loader=False)  # fmt: skip
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (22, 11)
    assert sorted(dm.test_set.labels.tolist()) == list(range(11))
    x = dm.train_set.images[0]
    # t = 0, 6, 12 ms over 3 bins: one event per bin, channel 2·bin + p
    assert [int(x[c].sum()) for c in range(6)] == [0, 1, 1, 0, 0, 1]
    assert x[1, 2, 1] == 1  # (x=1, y=2)


def test_missing_data_offline_names_the_keys(tmp_path, monkeypatch):
    dm = dvs_module(tmp_path / "nowhere")
    with pytest.raises(ConfigError) as err:
        dm.setup()
    assert err.value.key == "dataset.root" and "dataset.download=true" in str(err.value)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tonic.datasets, "CIFAR10DVS", offline)
    with pytest.raises(ConfigError) as err:
        dvs_module(tmp_path, download=True).setup()
    assert err.value.key == "dataset.download" and "dataset.download=false" in str(err.value)


def test_channel_count_must_match_bins():
    with pytest.raises(ConfigError) as err:
        TonicEventDataModule("dvs_gesture", num_classes=11, in_channels=18, n_bins=4,
                             image_size=32)  # fmt: skip
    assert err.value.key == "dataset.in_channels" and "8" in str(err.value)


# -- the emulated CIFAR-10 events ------------------------------------------------------------


def fake_cifar_folder(root: Path, per_class: int) -> None:
    import warnings

    from torchvision.io import write_png

    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=gen)
                write_png(img, str(folder / f"{i}.png"))


def test_cifar10_events_emulates_caches_and_normalises(tmp_path, monkeypatch):
    fake_cifar_folder(tmp_path / "cifar10", per_class=2)
    args = dict(source_root=str(tmp_path / "cifar10"), root=str(tmp_path / "events"),
                emulator={"steps": 8, "duration_us": 8000}, device_loader=False)  # fmt: skip
    dm = CIFAR10EventsDataModule(**args)
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (20, 20)
    frames = dm.train_set.images
    assert frames.shape == (20, 8, 32, 32) and frames.dtype == torch.uint8
    assert int(frames.sum(dtype=torch.long)) > 20 * 500  # random pixels: many events
    stacked = torch.stack([dm.train_eval_set[i][0] for i in range(20)])
    assert torch.allclose(stacked.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-4)
    assert torch.allclose(stacked.std(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)
    assert len(list((tmp_path / "events").glob(".adacal_events_cifar10_events_*.pt"))) == 2

    def boom(*args, **kwargs):
        raise AssertionError("emulated again despite the cache")

    monkeypatch.setattr("adacal.data.events.cifar10_events.emulate_frames", boom)
    again = CIFAR10EventsDataModule(**args)
    again.setup()
    assert torch.equal(again.train_set.images, frames)
    with pytest.raises(AssertionError):  # another threshold is another cache key
        CIFAR10EventsDataModule(**{**args, "emulator": {"steps": 8, "threshold": 0.3}}).setup()


def test_cifar10_events_bad_options_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        CIFAR10EventsDataModule(emulator={"contrast": 0.2})
    assert err.value.key == "dataset.emulator.contrast"
    with pytest.raises(ConfigError) as err:
        CIFAR10EventsDataModule(emulator={"threshold": 0})
    assert err.value.key == "dataset.emulator.threshold"
    with pytest.raises(ConfigError) as err:
        CIFAR10EventsDataModule(source_root=str(tmp_path / "none"), root=str(tmp_path)).setup()
    assert err.value.key == "dataset.source_root"
