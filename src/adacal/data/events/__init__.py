"""Event-driven data: an event-camera emulator, event representations, and datamodules for
CIFAR10-DVS, N-Caltech101, DVS128 Gesture (tonic layouts) and the emulated CIFAR-10 events."""

from __future__ import annotations

from adacal.data.events.cifar10_events import CIFAR10EventsDataModule
from adacal.data.events.emulator import EVENT_DTYPE, EmulatorConfig, emulate, emulate_images
from adacal.data.events.frames import EventFramesDataModule
from adacal.data.events.representation import to_frames, to_voxel_grid
from adacal.data.events.tonic_datasets import SOURCES, TonicEventDataModule

__all__ = [
    "EVENT_DTYPE",
    "SOURCES",
    "CIFAR10EventsDataModule",
    "EmulatorConfig",
    "EventFramesDataModule",
    "TonicEventDataModule",
    "emulate",
    "emulate_images",
    "to_frames",
    "to_voxel_grid",
]
