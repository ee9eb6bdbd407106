"""Checkpoints with a sha256 sidecar and the command that produced them.

A checkpoint ``model.pt`` travels with two small text files:

- ``model.pt.sha256``: ``sha256sum`` format, ``"<hex>  model.pt"``; checked on every load,
  so a corrupt or replaced file fails loudly instead of silently giving other numbers;
- ``model.pt.cmd``: the command line that wrote the checkpoint, to reproduce it.

Loading uses ``torch.load(..., weights_only=True)``: a checkpoint is tensors only, never
arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import torch
from torch import nn

from adacal.errors import ConfigError

_CHUNK = 1 << 20
_MAX_LISTED = 5


def sha256_file(path: str | Path) -> str:
    """Hex sha256 digest of the file at ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_paths(path: str | Path) -> tuple[Path, Path]:
    """``(<path>.sha256, <path>.cmd)`` for a checkpoint path."""
    path = Path(path)
    return path.with_name(path.name + ".sha256"), path.with_name(path.name + ".cmd")


def readable_by_all(path: str | Path) -> None:
    """Give a file made by ``mkstemp`` (mode 0600) the usual mode 0666 & ~umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it
    to ``path``.

    A full disk, a signal or any other error removes the temporary file and leaves ``path``
    as it was (absent, or the previous complete file): never a truncated file under the final
    name. The file gets the usual mode (0666 & ~umask).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        readable_by_all(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def save_state_dict(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    command: str,
    dtype: str = "float32",
) -> str:
    """Save ``model.state_dict()`` to ``path`` with ``.sha256`` and ``.cmd`` sidecars.

    ``dtype="float16"`` stores floating-point tensors in half precision (half the size; loading
    casts them back to the model's dtype). The tensor file is written to a temporary name and
    renamed (:func:`write_atomic`), so an interrupted save or a full disk never leaves a
    half-written checkpoint under the final name. Returns the hex sha256 digest.
    """
    if dtype not in ("float32", "float16"):
        raise ConfigError("ann.export_dtype", f"'{dtype}' is not one of float32, float16")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    if dtype == "float16":
        state = {
            k: v.half() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in state.items()
        }
    write_atomic(path, lambda f: torch.save(state, f))  # a file object: fixed archive name
    digest = sha256_file(path)
    sha_path, cmd_path = sidecar_paths(path)
    _write_text_atomic(sha_path, f"{digest}  {path.name}\n")
    _write_text_atomic(cmd_path, command.rstrip("\n") + "\n")
    return digest


def verify_checkpoint(path: str | Path, key: str = "ann.checkpoint") -> str:
    """Check ``path`` against ``<path>.sha256``; return the digest or raise ConfigError(key)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            key,
            f"checkpoint {path} does not exist; pass {key}=<path to a .pt file> "
            "or train the ANN first",
        )
    sha_path, _ = sidecar_paths(path)
    if not sha_path.is_file():
        raise ConfigError(
            key,
            f"{sha_path} is missing, so {path} cannot be verified; if you trust "
            f"the file, create it with `sha256sum {path.name} > {sha_path.name}` "
            f"in {path.parent}",
        )
    fields = sha_path.read_text().split()
    expected = fields[0].lower() if fields else ""
    digest = sha256_file(path)
    if digest != expected:
        raise ConfigError(
            key,
            f"sha256 of {path} ({digest[:12]}...) does not match {sha_path} "
            f"({expected[:12] or 'empty'}...): the file is corrupt or was "
            "replaced",
        )
    return digest


def first_line(err: BaseException) -> str:
    """The first line of an error's message, or its type name when the message is empty."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _shape_mismatch_message(
    model_state: Mapping[str, torch.Tensor], loaded: Mapping[str, torch.Tensor]
) -> str | None:
    """Describe keys/shapes that differ between a model and a loaded state dict, or None."""
    missing = [k for k in model_state if k not in loaded]
    unexpected = [k for k in loaded if k not in model_state]
    shapes = [
        f"{k} {tuple(loaded[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in model_state
        if k in loaded
        and isinstance(loaded[k], torch.Tensor)
        and tuple(loaded[k].shape) != tuple(model_state[k].shape)
    ]
    parts = []
    for label, items in (
        ("missing tensors", missing),
        ("unexpected tensors", unexpected),
        ("shape mismatch", shapes),
    ):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            parts.append(f"{label}: {', '.join(items[:_MAX_LISTED])}{more}")
    return "; ".join(parts) if parts else None


def load_state_dict(model: nn.Module, path: str | Path, key: str = "ann.checkpoint") -> str:
    """Verify ``path`` against its sha256 sidecar and load it into ``model`` (strict).

    Raises ``ConfigError(key, ...)`` when the file or its ``.sha256`` is missing, the digest
    differs, the file is not a plain tensor state dict, or the tensors do not fit ``model``
    (naming the differing tensors). Returns the hex digest.
    """
    digest = verify_checkpoint(path, key)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses arbitrary pickled objects
        raise ConfigError(
            key,
            f"{path} is not a plain tensor state dict "
            f"(torch.load weights_only=True refused it: "
            f"{first_line(err)})",
        ) from err
    if (
        isinstance(loaded, Mapping)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], Mapping)
    ):
        # a Lightning checkpoint of ANNClassifier: take the wrapped model's tensors
        loaded = {k.removeprefix("model."): v for k, v in loaded["state_dict"].items()}
    if not isinstance(loaded, Mapping):
        raise ConfigError(key, f"{path} holds a {type(loaded).__name__}, not a state dict")
    problem = _shape_mismatch_message(model.state_dict(), loaded)
    if problem is not None:
        raise ConfigError(
            key,
            f"{path} does not fit the model ({problem}); check that "
            "`architecture=` and `dataset=` (number of classes, input "
            "channels) match the run that wrote the checkpoint",
        )
    model.load_state_dict(loaded, strict=True)
    return digest
