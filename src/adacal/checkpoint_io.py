"""Lightning's checkpoint writer made atomic (``Trainer(plugins=[AtomicCheckpointIO()])``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from adacal.checkpoint import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer (``.ckpt``), written through
    :func:`adacal.checkpoint.write_atomic` (temporary file beside it, fsync, rename).

    Lightning's own writer goes through fsspec, whose temporary file may live on another file
    system and be copied into place: on a full disk that leaves a truncated ``last.ckpt``,
    which ``ann.resume=auto`` would then try to resume from. Pass it as
    ``Trainer(plugins=[AtomicCheckpointIO()])``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: torch.save(checkpoint, f))
