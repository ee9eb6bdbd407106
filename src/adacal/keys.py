"""Flat metric keys of a run record: the one module that builds and parses them.

Every value of ``metrics.json`` is stored under a flat key; a key of the SNN names its target
timestep T as a ``_T{T}`` suffix. The formats (``{p}`` a prefix such as ``snn/test``; an
empty prefix leaves out ``{p}/``)::

    ann/test/{name}                the ANN's score (acc, miou, pixel_acc); ann/macs, ann/energy_uj
    {p}/{name}_T{T}                a value at T: snn/test/acc_T4, snn/time/calibration_s_T4
    {p}/site{i}_{name}_T{T}        per site i: snn/test/site3_rate_T4, snn/adafire/site3_phi_T4
    {p}/class{k}_{name}_T{T}       per class k: snn/test/class2_iou_T4
    {p}/{name}_t{t}_T{T}           per step t: snn/test/exit_t1_T4 (the share exiting at step t)
    {p}/anytime_T{T}/{name}_t{t}   the score after t steps of a T-step run

Energy conventions (:data:`BURSTS`, :mod:`adacal.metrics.energy`): the names ``acs``, ``sops``,
``energy_uj``, ``saving_vs_ann`` and ``saving_vs_baseline`` (and per site ``acs``) are the
``spikes`` convention (a burst of k spikes is k events per synapse); the same quantities in the
``messages`` convention (a non-zero burst is one event) are named by :func:`burst_name`:
``acs_messages``, ``sops_messages``, ``energy_messages_uj``, ``saving_vs_ann_messages``,
``saving_vs_baseline_messages`` (``snn/test/energy_messages_uj_T4``).

Prefixes: :data:`TEST` (the method), :data:`BASELINE` (the SNN Calibration baseline at the
same T), :data:`FULL` (an IAT network with every sample running T steps),
:data:`UNCOMPRESSED` (the network before SSC), :func:`replay` (``snn/replay/<point>``: an exit
policy scored from the :data:`FULL` pass), :func:`budget` (``snn/budget/<point>``: the network of
a further compression budget, ``rho1.25``), :data:`TIME` (seconds), and per search
``snn/<search>`` (:data:`ADAFIRE`: φ per site, ``snn/ssc``: ratio per site).

Pure string functions: this module imports nothing from :mod:`adacal` (the bottom layer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TEST = "snn/test"
BASELINE = "snn/baseline"
FULL = "snn/full"
UNCOMPRESSED = "snn/uncompressed"
REPLAY = "snn/replay"  # + /<point>: an exit policy replayed from the full pass (snn.exit_replay)
BUDGET = "snn/budget"  # + /<point>: a further compression budget's network (compression.frontier)
TIME = "snn/time"
ADAFIRE = "snn/adafire"
ANN_MACS = "ann/macs"
ANN_ENERGY_UJ = "ann/energy_uj"
PHI = "phi"  # AdaFire's φ per site: site_key(ADAFIRE, PHI, i, T), the one field φ is read from
RATIO = "ratio"  # a compression's ratio per site: site_key(snn(name), RATIO, i, T)

SPIKES = "spikes"  # energy convention: a burst of k spikes is k events per synapse (the default)
MESSAGES = "messages"  # a non-zero burst is one event per synapse (the paper authors' helper)
BURSTS = (SPIKES, MESSAGES)
_UNITS = ("_uj",)  # a unit suffix stays last: energy_uj -> energy_messages_uj

_INT = r"(0|[1-9]\d*)"  # a number as key() writes it (no sign, no leading zero)
_ANYTIME = re.compile(
    rf"^(?:(?P<prefix>.+)/)?anytime_T(?P<T>{_INT})/(?P<name>[^/]+)_t(?P<t>{_INT})$"
)
_PER_T = re.compile(rf"^(?:(?P<prefix>.+)/)?(?P<stem>[^/]+)_T(?P<T>{_INT})$")
_SITE = re.compile(rf"^site(?P<i>{_INT})_(?P<name>.+)$")
_CLASS = re.compile(rf"^class(?P<i>{_INT})_(?P<name>.+)$")
_STEP = re.compile(rf"^(?P<name>.+)_t(?P<t>{_INT})$")


@dataclass(frozen=True)
class Key:
    """A parsed per-T key: ``prefix`` (``snn/test``; ``""`` for none), ``name`` (``acc``,
    ``rate``, ``phi``), the target timesteps ``T``, and at most one of ``site`` (per-site),
    ``cls`` (per-class), ``step`` (per-step t; with ``anytime`` the anytime score)."""

    prefix: str
    name: str
    T: int
    site: int | None = None
    cls: int | None = None
    step: int | None = None
    anytime: bool = False

    @property
    def plain(self) -> bool:
        """Whether this is a ``{p}/{name}_T{T}`` key (no site, class or step)."""
        return self.site is None and self.cls is None and self.step is None

    def text(self) -> str:
        """The key string again (``parse(k).text() == k`` for every key :func:`parse` reads)."""
        if self.anytime:
            return anytime_key(self.prefix, self.name, self.step or 0, self.T)
        if self.site is not None:
            return site_key(self.prefix, self.name, self.site, self.T)
        if self.cls is not None:
            return class_key(self.prefix, self.name, self.cls, self.T)
        if self.step is not None:
            return step_key(self.prefix, self.name, self.step, self.T)
        return key(self.prefix, self.name, self.T)


def _join(prefix: str, stem: str) -> str:
    return f"{prefix}/{stem}" if prefix else stem


def key(prefix: str, name: str, T: int) -> str:
    """``{prefix}/{name}_T{T}``: ``key(TEST, "acc", 4)`` → ``snn/test/acc_T4``; an empty
    prefix gives ``{name}_T{T}``."""
    return _join(prefix, f"{name}_T{T}")


def site_key(prefix: str, name: str, site: int, T: int) -> str:
    """``{prefix}/site{site}_{name}_T{T}``: ``site_key(TEST, "rate", 3, 4)`` →
    ``snn/test/site3_rate_T4``; ``site_key(ADAFIRE, PHI, 3, 4)`` → ``snn/adafire/site3_phi_T4``."""
    return _join(prefix, f"site{site}_{name}_T{T}")


def class_key(prefix: str, name: str, cls: int, T: int) -> str:
    """``{prefix}/class{cls}_{name}_T{T}``: ``class_key(TEST, "iou", 2, 4)`` →
    ``snn/test/class2_iou_T4``."""
    return _join(prefix, f"class{cls}_{name}_T{T}")


def step_key(prefix: str, name: str, step: int, T: int) -> str:
    """``{prefix}/{name}_t{step}_T{T}``: ``step_key(TEST, "exit", 1, 4)`` →
    ``snn/test/exit_t1_T4``."""
    return _join(prefix, f"{name}_t{step}_T{T}")


def anytime_key(prefix: str, name: str, step: int, T: int) -> str:
    """``{prefix}/anytime_T{T}/{name}_t{step}``: ``anytime_key(TEST, "acc", 2, 4)`` →
    ``snn/test/anytime_T4/acc_t2``."""
    return _join(prefix, f"anytime_T{T}/{name}_t{step}")


def burst_name(name: str, burst: str = SPIKES) -> str:
    """The name of an energy quantity in the convention ``burst`` (:data:`BURSTS`): ``name``
    itself for ``spikes``; for ``messages`` ``_messages`` inserted before a unit suffix, else
    appended (``energy_uj`` → ``energy_messages_uj``, ``sops`` → ``sops_messages``,
    ``saving_vs_baseline`` → ``saving_vs_baseline_messages``). ValueError for another
    convention."""
    if burst == SPIKES:
        return name
    if burst != MESSAGES:
        raise ValueError(f"unknown energy convention {burst!r}; one of {', '.join(BURSTS)}")
    unit = next((u for u in _UNITS if name.endswith(u)), "")
    return f"{name.removesuffix(unit)}_{MESSAGES}{unit}" if unit else f"{name}_{MESSAGES}"


def ann_key(name: str) -> str:
    """``ann/test/{name}``: the ANN's score (``acc``, ``miou``, ``pixel_acc``)."""
    return f"ann/test/{name}"


def snn(name: str) -> str:
    """The prefix ``snn/{name}`` of an SNN record (``test``, ``baseline``, ``full``) or a
    search's per-site choices (``snn("ssc")`` → ``snn/ssc``)."""
    return f"snn/{name}"


def replay(point: str) -> str:
    """The prefix ``snn/replay/{point}`` of a replayed exit policy (``entropy_b0.2``)."""
    return _point(REPLAY, point)


def replay_points(metrics: Iterable[str]) -> list[str]:
    """The names of the replayed exit policies with a key in ``metrics``, sorted."""
    return _points(REPLAY, metrics)


def budget(point: str) -> str:
    """The prefix ``snn/budget/{point}`` of a further compression budget (``rho1.25``)."""
    return _point(BUDGET, point)


def budget_points(metrics: Iterable[str]) -> list[str]:
    """The names of the compression budgets with a key in ``metrics``, sorted."""
    return _points(BUDGET, metrics)


def _point(root: str, point: str) -> str:
    if not point or "/" in point:
        raise ValueError(f"a point under {root} needs a name without '/', got {point!r}")
    return f"{root}/{point}"


def _points(root: str, metrics: Iterable[str]) -> list[str]:
    found = {text[len(root) + 1 :].split("/")[0] for text in metrics if under(text, root)}
    return sorted(p for p in found if p)


def snn_name(prefix: str) -> str | None:
    """The inverse of :func:`snn`: ``snn/ssc`` → ``ssc``; None for another prefix."""
    name = prefix.removeprefix("snn/")
    return name if name != prefix and name and "/" not in name else None


def parse(text: str) -> Key | None:
    """The :class:`Key` of a per-T key, None for any other key (``ann/test/acc``, a name
    without ``_T{T}``). ``site{i}_``, ``class{k}_`` and ``_t{t}`` parts are read off the name."""
    if m := _ANYTIME.match(text):
        name, T, t = m["name"], int(m["T"]), int(m["t"])
        return Key(m["prefix"] or "", name, T, step=t, anytime=True)
    m = _PER_T.match(text)
    if not m:
        return None
    prefix, stem, T = m["prefix"] or "", m["stem"], int(m["T"])
    if s := _SITE.match(stem):
        return Key(prefix, s["name"], T, site=int(s["i"]))
    if c := _CLASS.match(stem):
        return Key(prefix, c["name"], T, cls=int(c["i"]))
    if t := _STEP.match(stem):
        return Key(prefix, t["name"], T, step=int(t["t"]))
    return Key(prefix, stem, T)


def split_T(text: str) -> tuple[str, int] | None:
    """``("snn/test/acc", 4)`` for ``snn/test/acc_T4``: the key without its ``_T{T}`` and T;
    None for a key that does not end in one (anytime keys included)."""
    m = _PER_T.match(text)
    return None if not m else (text[: m.start("T") - 2], int(m["T"]))


def parsed(keys: Iterable[str]) -> list[Key]:
    """Every per-T key of ``keys`` parsed (others left out), in order."""
    return [k for text in keys if (k := parse(text)) is not None]


def timesteps_of(metrics: Iterable[str], prefix: str, name: str) -> list[int]:
    """Sorted T with a ``{prefix}/{name}_T{T}`` key in ``metrics`` (a mapping or its keys)."""
    return sorted(
        {k.T for k in parsed(metrics) if k.plain and (k.prefix, k.name) == (prefix, name)}
    )


def site_values(metrics: Mapping[str, Any], prefix: str, name: str, T: int) -> dict[int, Any]:
    """``{site: value}`` of every ``{prefix}/site{site}_{name}_T{T}`` key, by site."""
    found = {
        k.site: metrics[text]
        for text in metrics
        if (k := parse(text)) is not None
        and k.site is not None
        and (k.prefix, k.name, k.T) == (prefix, name, T)
    }
    return dict(sorted(found.items()))


def under(text: str, prefix: str) -> bool:
    """Whether the key ``text`` lies under ``prefix`` (``snn/test/acc_T4`` under ``snn/test``)."""
    return text.startswith(f"{prefix}/")


def move(text: str, old: str, new: str) -> str | None:
    """The key ``text`` with its prefix ``old`` replaced by ``new`` (``snn/full/acc_T4`` →
    ``snn/test/acc_T4``); None when it is not under ``old``."""
    return _join(new, text[len(old) + 1 :]) if under(text, old) else None
