"""The real data archives in ../shared/data (beside the repository), extracted once into the
git-ignored data/; the checks that read them are marked ``realdata``."""

from __future__ import annotations

import fcntl
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

# ../shared/data relative to the repository root, found from this file (never an absolute path)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

F = TypeVar("F", bound=Callable)


def realdata_marks(archive: str) -> list[pytest.MarkDecorator]:
    """``realdata``, and a one-line skip when ``../shared/data/<archive>`` is absent."""
    return [
        pytest.mark.realdata,
        pytest.mark.skipif(
            not (SHARED_DATA / archive).is_file(),
            reason=f"real-data check: ../shared/data/{archive} is absent",
        ),
    ]


def realdata(archive: str) -> Callable[[F], F]:
    """Decorator form of :func:`realdata_marks` for one test."""

    def mark(test: F) -> F:
        for marker in realdata_marks(archive):
            test = marker(test)
        return test

    return mark


def extracted_archive(
    repo_root: Path, archive: str, folder: str, required: tuple[str, ...]
) -> Path:
    """``data/<folder>`` extracted once from ``../shared/data/<archive>`` (git-ignored ``data/``,
    as the README says); skips the calling test when the archive is absent."""
    source = SHARED_DATA / archive
    if not source.is_file():
        pytest.skip(f"real-data check: ../shared/data/{archive} is absent")
    root = repo_root / "data" / folder
    root.parent.mkdir(parents=True, exist_ok=True)
    # one extraction at a time: pytest-xdist workers may reach the same archive together
    with open(root.parent / f".{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((root / part).is_dir() for part in required):
            with tarfile.open(source) as tar:
                tar.extractall(root.parent, filter="data")
    return root
