"""The git revision that produced a result, recorded next to every metrics file."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(args: list[str], cwd: str | Path | None) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_revision(cwd: str | Path | None = None) -> str:
    """Commit hash of the repository at ``cwd`` (default: this package's checkout).

    ``"<hash>+dirty"`` when tracked files have uncommitted changes, ``"unknown"`` outside a
    git repository or before the first commit.
    """
    cwd = Path(__file__).resolve().parent if cwd is None else cwd
    rev = _git(["rev-parse", "HEAD"], cwd)
    if not rev:
        return "unknown"
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return f"{rev}+dirty" if status else rev
