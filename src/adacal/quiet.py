"""Library warnings that are noise for an adacal user, silenced at their source.

Each filter names the message and the module that emits it, so any other warning, from these
libraries or elsewhere, still shows. :func:`install` is idempotent; the pipeline calls it
at the start of every run (and on import), so a plain run, a multirun job and a submitit
job print the same. ``pyproject.toml`` lists the same messages for pytest.
"""

from __future__ import annotations

import warnings

# (message regex, module regex, category): the module is where ``warnings.warn`` is called
NOISE: tuple[tuple[str, str, type[Warning]], ...] = (
    # Lightning sees `srun` on PATH (a SLURM login node, or the local test cluster) and
    # suggests launching through it; adacal's SLURM launchers already do when they should.
    (r"The `srun` command is available on your system", r"lightning\.", UserWarning),
    # Lightning calls torch's own deprecated pytree API; nothing a user can change.
    (r".*LeafSpec.*is deprecated", r"lightning\.", Warning),
    # The data loaders are in-memory tensors (or a device loader): workers would not help.
    (r".*does not have many workers", r"lightning\.", UserWarning),
    # `trainer=cpu` on a GPU machine is a choice (tests, smoke runs), not an accident.
    (r"GPU available but not used", r"lightning\.", UserWarning),
    (r"TPU available but not used", r"lightning\.", UserWarning),
    # A small data set (digits) has fewer batches per epoch than Lightning's log interval.
    (
        r"The number of training batches .* is smaller than the logging interval",
        r"lightning\.",
        UserWarning,
    ),
    # torchvision.io decoding is deprecated in favour of TorchCodec; it is kept on purpose
    # (about 2x faster than PIL on CIFAR JPEGs) while it exists.
    (
        r"The image decoding and encoding capabilities of TorchVision are deprecated",
        r"torchvision\.",
        DeprecationWarning,
    ),
)


def install() -> None:
    """Add the :data:`NOISE` filters (once each) to the process's warning filters."""
    for message, module, category in NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


install()
