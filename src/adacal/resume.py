"""Where ANN training starts: ``ann.resume`` (``auto``, a Lightning checkpoint, or null).

A requeued SLURM job (submitit, ``hydra/launcher=slurm``) runs the same job again in the same
output directory. With ``ann.resume=auto`` it picks up what the earlier attempt left there
instead of training from scratch again. :func:`resume_plan` makes that decision from the
files alone (it reads, never writes) so that it can be tested without training anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adacal.checkpoint import verify_checkpoint
from adacal.errors import ConfigError

AUTO = "auto"
FINISHED = "ann.pt"  # the state dict prepare_ann writes when training is done (+ .sha256)
LAST = Path("lightning_checkpoints") / "last.ckpt"  # written by ModelCheckpoint(save_last)


@dataclass(frozen=True)
class ResumePlan:
    """What :func:`adacal.stages.ann.prepare_ann` does.

    ``action``: ``"fresh"`` (train from scratch), ``"resume"`` (``trainer.fit(ckpt_path=path)``)
    or ``"load"`` (training had finished: load the hash-checked state dict ``path``, no
    training). ``reason`` is one line for the log.
    """

    action: Literal["fresh", "resume", "load"]
    path: Path | None
    reason: str

    @property
    def ckpt_path(self) -> str | None:
        """The ``ckpt_path`` for ``Trainer.fit`` (None unless ``action == "resume"``)."""
        return str(self.path) if self.action == "resume" else None


def resume_plan(resume: str | Path | None, out_dir: str | Path) -> ResumePlan:
    """Decide how training starts from ``ann.resume`` and the run's output directory.

    - ``None`` (or ``""``): train from scratch, whatever ``out_dir`` holds.
    - ``"auto"``: ``<out_dir>/ann.pt`` with a matching ``ann.pt.sha256`` means an earlier
      attempt finished training: load it. Otherwise ``<out_dir>/lightning_checkpoints/last.ckpt``
      means it was interrupted: resume from it. Otherwise train from scratch. An ``ann.pt``
      whose hash file is missing or differs (interrupted while saving) counts as unfinished.
    - any other value: the Lightning checkpoint to resume from; it must be a file, otherwise
      :class:`~adacal.errors.ConfigError` naming ``ann.resume``.
    """
    if resume is None or str(resume).strip() == "":
        return ResumePlan("fresh", None, "ann.resume=null: training from scratch")
    out_dir = Path(out_dir)
    if str(resume) == AUTO:
        finished = out_dir / FINISHED
        if finished.is_file():
            try:
                verify_checkpoint(finished, key="ann.resume")
            except ConfigError:
                pass  # half-written (no or wrong hash): fall back to the Lightning checkpoint
            else:
                return ResumePlan(
                    "load", finished, f"ann.resume=auto: training had finished, loading {finished}"
                )
        last = out_dir / LAST
        if last.is_file():
            return ResumePlan("resume", last, f"ann.resume=auto: resuming training from {last}")
        return ResumePlan("fresh", None, f"ann.resume=auto: nothing to resume in {out_dir}")
    path = Path(resume).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(
            "ann.resume",
            f"{path} {what}; pass ann.resume=<Lightning .ckpt file> (e.g. "
            f"<run dir>/{LAST.as_posix()}), ann.resume=auto to continue the run's own "
            "output directory, or ann.resume=null to train from scratch",
        )
    return ResumePlan("resume", path, f"ann.resume: resuming training from {path}")
