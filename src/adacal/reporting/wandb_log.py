"""Weights & Biases reporting of one run's flat metrics (works offline; ``wandb sync`` uploads).

The rows are pure functions of the flat metric keys (:mod:`adacal.reporting.run_metrics`):

- :func:`curve_rows`: one row per fitted T with every per-T value of the run (scores,
  spikes, rate, SOPs, energy, savings, mean timesteps, the share of samples that exit before
  T, and the ``baseline`` / ``full`` / ``uncompressed`` sub-records' scores and costs);
- :func:`site_rows`: per-site firing rate (and ACs, AdaFire φ, compression ratio) at one T;
- :func:`headline`: the numbers put in ``run.summary`` (the largest T against the ANN).

The run's lifecycle (:func:`require_login`, :func:`start`, :func:`finish`): an online run
checks for a login before any work, the run starts with the full config at the beginning of
the job (so an interrupted job still has its run, with its config), and it ends marked
failed (non-zero exit code, ``status`` and ``error`` in its summary) when the job fails.

Logging is a thin layer on top of them, written against the few methods of a W&B ``Run``
it uses (``define_metric``, ``log``, ``summary``, ``log_artifact``), so it can be tested with a
fake run: :func:`log_run` draws the curves against T, :func:`log_checkpoint` stores a state
dict as a ``model`` artifact, and :func:`log_rendered_table` logs a rendered paper table
(and its figures) in a run of its own. ``wandb`` is imported only inside those functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adacal import keys
from adacal.checkpoint import first_line, sidecar_paths
from adacal.errors import ConfigError
from adacal.reporting.metrics_file import error_message
from adacal.reporting.table import fitted_timesteps

# per-T quantities under snn/test/ (besides the score names), in column order
TEST_QUANTITIES = (
    "spikes",
    "rate",
    "sops",
    "energy_uj",
    "saving_vs_ann",
    "saving_vs_baseline",
    "mean_timesteps",
    # the same costs in the messages convention (a non-zero burst = one AC; keys.burst_name)
    "sops_messages",
    "energy_messages_uj",
    "saving_vs_ann_messages",
    "saving_vs_baseline_messages",
)
# sub-records compared against (snn/<record>/...), and the costs they report
SUB_RECORDS = ("baseline", "full", "uncompressed")
SUB_QUANTITIES = ("sops", "energy_uj", "mean_timesteps", "sops_messages", "energy_messages_uj")
EXIT_FRACTION = "early_exit_fraction"
CURVE_PREFIX = "curve/"
PER_T_TABLE = "per_T"
SITE_TABLE = "site_rates"
HEADLINE_PREFIX = "headline/"


def _number(value: object) -> float | None:
    """``value`` as a float, or None when it is missing or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def exit_fraction(metrics: Mapping[str, object], T: int) -> float | None:
    """Share of test samples that exit before step T (IAT), from ``snn/test/exit_t{t}_T{T}``.

    The exit histogram's last bin (t = T) also holds the samples that ran all T steps, so the
    early-exit share is the sum of the bins t < T. None when the run has no full histogram.
    """
    shares = [_number(metrics.get(keys.step_key(keys.TEST, "exit", t, T))) for t in range(1, T + 1)]
    if any(share is None for share in shares):
        return None
    return float(sum(shares[:-1]))  # type: ignore[arg-type]


def curve_rows(
    metrics: Mapping[str, object], names: Sequence[str] = ("acc",)
) -> list[dict[str, float | int]]:
    """One row per fitted T (sorted): ``T`` and every per-T value the run reports.

    Keys of a row, each present only when the run has the value:

    - ``<name>`` for each score name (``acc``; ``miou``, ``pixel_acc``), and
      ``spikes``, ``rate``, ``sops``, ``energy_uj``, ``saving_vs_ann``,
      ``saving_vs_baseline``, ``mean_timesteps`` (all ``snn/test/<key>_T{T}``), and the
      energy quantities of the ``messages`` convention (``sops_messages``,
      ``energy_messages_uj``, ``saving_vs_ann_messages``, ``saving_vs_baseline_messages``);
    - ``early_exit_fraction``: share of samples exiting before T (:func:`exit_fraction`);
    - ``<record>/<name>``, ``<record>/sops``, ``<record>/energy_uj``,
      ``<record>/mean_timesteps`` (and ``sops_messages``, ``energy_messages_uj``) for the
      ``baseline``, ``full`` (IAT without exits) and ``uncompressed`` (before SSC) records
      (``snn/<record>/<key>_T{T}``).

    The fitted T are those with a ``snn/test/<names[0]>_T{T}`` key. Values are floats.
    """
    names = tuple(names)
    rows: list[dict[str, float | int]] = []
    for T in fitted_timesteps(metrics, names[0]):
        row: dict[str, float | int] = {"T": T}
        for key in (*names, *TEST_QUANTITIES):
            value = _number(metrics.get(keys.key(keys.TEST, key, T)))
            if value is not None:
                row[key] = value
        share = exit_fraction(metrics, T)
        if share is not None:
            row[EXIT_FRACTION] = share
        for record in SUB_RECORDS:
            for key in (*names, *SUB_QUANTITIES):
                value = _number(metrics.get(keys.key(keys.snn(record), key, T)))
                if value is not None:
                    row[f"{record}/{key}"] = value
        rows.append(row)
    return rows


def row_columns(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Every key of ``rows``, in order of first appearance (the columns of a table)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def site_rows(metrics: Mapping[str, object], T: int) -> list[dict[str, float | int]]:
    """Per-site values at T, one row per site with a ``snn/test/site{k}_rate_T{T}`` key.

    Keys: ``site`` (k), ``rate`` (spikes per neuron per step), and when present ``acs``
    (``snn/test/site{k}_acs_T{T}``), ``acs_messages`` (``snn/test/site{k}_acs_messages_T{T}``),
    ``phi`` (``snn/adafire/site{k}_phi_T{T}``) and ``<record>_ratio`` (a compression's
    ``snn/<record>/site{k}_ratio_T{T}``, e.g. ``ssc``).
    """
    ratios: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        k = keys.parse(key)
        if k is None or k.site is None or (k.name, k.T) != (keys.RATIO, T):
            continue
        if (search := keys.snn_name(k.prefix)) and (number := _number(value)) is not None:
            ratios.setdefault(k.site, {})[f"{search}_ratio"] = number
    rows: list[dict[str, float | int]] = []
    for site in keys.site_values(metrics, keys.TEST, "rate", T):
        row: dict[str, float | int] = {"site": site}
        for column, prefix, name in (
            ("rate", keys.TEST, "rate"),
            ("acs", keys.TEST, "acs"),
            ("acs_messages", keys.TEST, keys.burst_name("acs", keys.MESSAGES)),
            ("phi", keys.ADAFIRE, keys.PHI),
        ):
            value = _number(metrics.get(keys.site_key(prefix, name, site, T)))
            if value is not None:
                row[column] = value
        row.update(sorted(ratios.get(site, {}).items()))
        rows.append(row)
    return rows


def headline(
    metrics: Mapping[str, object], names: Sequence[str] = ("acc",)
) -> dict[str, float | int]:
    """The run's headline numbers (``headline/*``): the largest fitted T against the ANN.

    ``headline/T``; per score name ``headline/<name>`` (SNN), ``headline/ann_<name>`` and
    ``headline/delta_<name>`` (SNN − ANN); ``headline/ann_energy_uj``; and the SNN's
    ``sops``, ``energy_uj``, ``mean_timesteps``, ``saving_vs_baseline`` and
    ``early_exit_fraction`` at that T, each when present.
    """
    out: dict[str, float | int] = {}
    rows = curve_rows(metrics, names)
    last: Mapping[str, float | int] = rows[-1] if rows else {}
    if rows:
        out[f"{HEADLINE_PREFIX}T"] = last["T"]
    for name in names:
        ann = _number(metrics.get(keys.ann_key(name)))
        snn = last.get(name)
        if snn is not None:
            out[f"{HEADLINE_PREFIX}{name}"] = snn
        if ann is not None:
            out[f"{HEADLINE_PREFIX}ann_{name}"] = ann
        if snn is not None and ann is not None:
            out[f"{HEADLINE_PREFIX}delta_{name}"] = snn - ann
    ann_energy = _number(metrics.get(keys.ANN_ENERGY_UJ))
    if ann_energy is not None:
        out[f"{HEADLINE_PREFIX}ann_energy_uj"] = ann_energy
    for key in ("sops", "energy_uj", "mean_timesteps", "saving_vs_baseline", EXIT_FRACTION):
        if key in last:
            out[f"{HEADLINE_PREFIX}{key}"] = last[key]
    return out


def _table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> Any:
    """A ``wandb.Table`` of ``rows`` (missing cells None; columns may mix str and numbers)."""
    import wandb

    data = [[row.get(column) for column in columns] for row in rows]
    return wandb.Table(columns=list(columns), data=data, allow_mixed_types=True)


def log_run(run: Any, metrics: Mapping[str, object], names: Sequence[str] = ("acc",)) -> None:
    """Log the curves against T, the per-T and per-site tables, and the headline numbers.

    On a W&B ``Run`` (or any object with ``define_metric``, ``log`` and a ``summary``
    mapping): ``T`` becomes the step metric of every ``curve/*`` key (as a glob, and each key
    by name), and each fitted T is one ``log`` call ``{"T": T, "curve/<key>": value, ...}``
    (keys of :func:`curve_rows`), so W&B draws the score, SOPs, energy and mean timesteps /
    exits against T. One more ``log`` call holds ``per_T`` (the same rows as a
    ``wandb.Table``) and ``site_rates`` (:func:`site_rows` at the largest T, when the run has
    per-site rates). The :func:`headline` numbers go to ``run.summary``. A run without SNN
    results logs only the headline.
    """
    rows = curve_rows(metrics, names)
    if rows:
        columns = row_columns(rows)
        run.define_metric("T")
        run.define_metric(f"{CURVE_PREFIX}*", step_metric="T")
        # each key also by name: an explicit definition wins over any other glob that matches
        # it, such as the "*" (step trainer/global_step) that Lightning's WandbLogger defines
        for key in columns[1:]:
            run.define_metric(f"{CURVE_PREFIX}{key}", step_metric="T")
        for row in rows:
            run.log(
                {"T": row["T"], **{f"{CURVE_PREFIX}{k}": v for k, v in row.items() if k != "T"}}
            )
        tables = {PER_T_TABLE: _table(rows, columns)}
        sites = site_rows(metrics, int(rows[-1]["T"]))
        if sites:
            tables[SITE_TABLE] = _table(sites, row_columns(sites))
        run.log(tables)
    summary = headline(metrics, names)
    if summary:
        run.summary.update(summary)


def require_login(mode: str | None) -> None:
    """For ``logger.mode=online``: raise :class:`ConfigError` (``logger.mode``) unless W&B has
    credentials (``WANDB_API_KEY``, ``wandb login``'s .netrc, or a settings file). Never
    prompts; offline and disabled modes need nothing."""
    if str(mode) != "online":
        return
    import wandb

    if not wandb.login(prompt=False, verify=False):
        raise ConfigError(
            "logger.mode",
            "online W&B logging needs a login: run `wandb login` (or set WANDB_API_KEY), "
            "or pass logger.mode=offline (upload later with `wandb sync`) or logger=none",
        )


def start(logger: Any, config: Mapping[str, Any], mode: str | None = None) -> None:
    """Start the W&B run behind a Lightning ``WandbLogger`` now and log the resolved config.

    A run that cannot start online becomes a :class:`ConfigError` naming ``logger.mode``.
    """
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        # Lightning always passes anonymous=None; W&B warns that the setting has no effect
        init.pop("anonymous", None)
    try:
        logger.experiment  # noqa: B018 - wandb.init happens on first access
    except Exception as err:
        if str(mode) != "online":
            raise
        raise ConfigError(
            "logger.mode",
            f"the online W&B run did not start ({first_line(err)}); check `wandb login` and "
            "the network, or pass logger.mode=offline",
        ) from err
    logger.log_hyperparams(dict(config))


def finish(run: Any, error: BaseException | None = None, exit_code: int | None = None) -> None:
    """End the run: exit code 0 when ``error`` is None, else ``exit_code`` (default 1), which
    W&B shows as a failed run; a failure also puts ``status: failed`` and the one-line
    ``error`` in the summary."""
    if error is not None:
        run.summary.update({"status": "failed", "error": error_message(error)})
        run.finish(exit_code=1 if exit_code is None else exit_code)
    else:
        run.summary.update({"status": "ok"})
        run.finish(exit_code=0)


def artifact_name(*parts: object) -> str:
    """An artifact name from ``parts`` joined by ``-`` (characters W&B refuses become ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(str(p) for p in parts)).strip("-")


def log_checkpoint(
    run: Any, path: str | Path, name: str, metadata: Mapping[str, Any] | None = None
) -> Any:
    """Log the state dict at ``path`` (with its ``.sha256`` and ``.cmd`` sidecars when present)
    as a ``model`` artifact called ``name``; returns the ``wandb.Artifact``.

    The metadata is ``metadata`` plus ``sha256`` (from the sidecar, unless given) and
    ``file`` (the state dict's file name).
    """
    import wandb

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to log at {path}")
    sha_path, cmd_path = sidecar_paths(path)
    meta = dict(metadata or {})
    meta.setdefault("file", path.name)
    if sha_path.is_file():
        meta.setdefault("sha256", sha_path.read_text().split()[0])
    artifact = wandb.Artifact(name=name, type="model", metadata=meta)
    artifact.add_file(str(path), name=path.name)
    for sidecar in (sha_path, cmd_path):
        if sidecar.is_file():
            artifact.add_file(str(sidecar), name=sidecar.name)
    run.log_artifact(artifact)
    return artifact


def log_rendered_table(
    rows: list[dict],
    columns: list[str],
    images: dict[str, Path],
    *,
    project: str,
    group: str | None,
    entity: str | None = None,
    mode: str = "offline",
    save_dir: str | Path,
    name: str = "table",
) -> None:
    """Log a rendered paper table and its figures in a run of their own.

    Starts a new W&B run (``job_type="table"``, in ``group``, the sweep's group, so it sits
    beside the sweep's jobs; ``name`` is also the run's name) under ``save_dir/wandb``, logs
    ``rows`` as the ``wandb.Table`` ``<name>`` with ``columns`` (a cell a row lacks is None;
    a column may mix text and numbers) and each image as the ``wandb.Image``
    ``figures/<key>``, all in one step. The run is always finished, also on error. The run
    is a new one even when another run is active in this process.
    """
    import wandb

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        entity=entity,
        group=group,
        job_type="table",
        name=name,
        mode=mode,  # type: ignore[arg-type]
        dir=str(save_dir),
        reinit="create_new",
        settings=wandb.Settings(console="off", save_code=False),
    )
    try:
        payload: dict[str, Any] = {name: _table(rows, columns)}
        for key, image in images.items():
            payload[f"figures/{key}"] = wandb.Image(str(image))
        run.log(payload)
    finally:
        run.finish()


__all__ = [
    "artifact_name",
    "curve_rows",
    "exit_fraction",
    "finish",
    "headline",
    "log_checkpoint",
    "log_rendered_table",
    "log_run",
    "require_login",
    "row_columns",
    "site_rows",
    "start",
]
