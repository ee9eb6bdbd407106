"""The real data archives in ../shared/data, extracted once into the git-ignored data/."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest


def extracted_archive(
    repo_root: Path, archive: str, folder: str, required: tuple[str, ...]
) -> Path:
    """``data/<folder>`` extracted once from ``../shared/data/<archive>`` (git-ignored ``data/``,
    as the README says); skips the calling test when the archive is absent."""
    source = repo_root.parent / "shared" / "data" / archive
    if not source.exists():
        pytest.skip(f"{source} is absent: the real archive is needed for this check")
    root = repo_root / "data" / folder
    if not all((root / part).is_dir() for part in required):
        root.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as tar:
            tar.extractall(root.parent, filter="data")
    return root
