"""Evaluate a converted network (or its ANN) on a test set with Lightning, DDP-safe.

One pass over the test set simulates T steps per batch and reports, for every t
in ``anytime`` (t ≤ T), the top-1 accuracy of the rate-coded prediction after t
steps, plus spikes per site. Counts are summed across processes, and the
test set is sharded without padding (rank r takes samples r, r+W, r+2W, ...),
so 1 and N processes give the same numbers.

With ``exit_thresholds`` (IAT, :mod:`adacal.adaptive.iat`) each sample instead stops
at its own exit step; the accuracy at exit, the exit histogram and the mean number of
timesteps are reported, and spikes/SOPs/messages count only the steps actually simulated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchmetrics import Metric

from adacal.lightning.scoring import Scorer, TopOne
from adacal.snn.convert import SpikingNetwork
from adacal.snn.early_exit import check_metric, simulate_early_exit
from adacal.snn.exit_replay import ExitPoint, at_exit, counts_to_exit, exit_index, running_means
from adacal.snn.runtime import RELEASE_BYTES, release_free_memory
from adacal.snn.simulate import (
    anytime_logits,
    message_totals,
    simulate,
    sop_totals,
    spike_totals,
)


class ShardSampler(Sampler[int]):
    """Indices rank, rank+world, ... of range(n): every sample exactly once over all ranks."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Counts(Metric):
    """Sums of fixed-shape count vectors, reduced by sum across processes."""

    full_state_update = False

    def __init__(self, sizes: dict[str, int | tuple[int, ...]]) -> None:
        super().__init__()
        for name, size in sizes.items():
            self.add_state(
                name, default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, **values: Tensor) -> None:
        for name, value in values.items():
            setattr(self, name, getattr(self, name) + value.to(torch.float64))

    def compute(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self._defaults}

    def totals(self) -> dict[str, Tensor]:
        """The states summed over all processes (unsqueezed, unlike ``compute``)."""
        with self.sync_context():
            return {name: getattr(self, name).clone() for name in self._defaults}


class SNNEvaluator(L.LightningModule):
    """Test-only module. ``T = 0`` evaluates the network as the ANN (all sites ReLU).

    Results (rank 0 and every rank alike) land in ``self.results``: the ``scorer``'s
    scores after each t in ``anytime`` (``acc_t{t}`` for :class:`TopOne`, the default;
    ``miou_t{t}``, ``pixel_acc_t{t}`` and ``class_iou`` for segmentation),
    ``spikes`` (per image, all sites, T steps),
    ``site_spikes`` [L] per image, ``samples``; when the sites carry fan-out maps
    (:func:`adacal.metrics.energy.attach_fanout`) also ``sops`` (synaptic events per
    image, a burst of k spikes being k events) and ``site_sops`` [L], and ``messages``
    (a non-zero burst being one event per synapse; ``sops`` for IF) and ``site_messages`` [L].

    With ``exit_thresholds`` η [T] (and T > 0) every sample exits after the first step t
    whose ``confidence`` exceeds η_t (:func:`adacal.snn.early_exit.simulate_early_exit`,
    ``exit_chunk`` steps per forward pass);
    ``anytime`` is then ignored and the results are ``acc_t{T}`` = ``acc_exit`` (accuracy
    at exit), ``mean_timesteps``, ``exit_hist`` (fraction exiting at t = 1..T) and the
    spikes/SOPs/messages of the simulated steps only.

    With ``replay`` (full T-step passes only) each :class:`~adacal.snn.exit_replay.ExitPoint`
    is also scored as if its exit policy had run (:mod:`adacal.snn.exit_replay`):
    ``results["replay"][name]`` holds the same keys as an exit run.
    """

    def __init__(
        self,
        net: SpikingNetwork,
        dataset: Dataset,
        T: int,
        anytime: Sequence[int] = (),
        chunk: int | None = 8,
        batch_size: int = 256,
        num_workers: int = 0,
        exit_thresholds: Tensor | None = None,
        confidence: str = "entropy",
        scorer: Scorer | None = None,
        replay: Sequence[ExitPoint] = (),
        exit_chunk: int = 1,
    ) -> None:
        super().__init__()
        self.net = net
        self.scorer = scorer if scorer is not None else TopOne()
        self.dataset = dataset
        self.T = int(T)
        self.confidence = check_metric(confidence)
        self.exit_thresholds: Tensor | None = None
        if exit_thresholds is not None and self.T > 0:
            eta = torch.as_tensor(exit_thresholds, dtype=torch.float32).detach().cpu().reshape(-1)
            if eta.numel() != self.T:
                raise ValueError(f"exit_thresholds: need T={self.T} values, got {eta.numel()}")
            self.exit_thresholds = eta
            anytime = ()  # anytime accuracies do not apply with exits
        steps = sorted({int(t) for t in anytime if 0 < int(t) <= self.T} | {max(self.T, 1)})
        self.steps = steps
        self.chunk = chunk
        self.exit_chunk = int(exit_chunk)
        self.batch_size = batch_size
        self.num_workers = num_workers
        L_ = max(1, len(net.sites))
        sizes = {**self.scorer.sizes(len(steps)), "site_spikes": L_, "site_sops": L_}
        sizes["site_messages"] = L_
        if self.exit_thresholds is not None:
            sizes.update(exit_hist=self.T, timesteps=1)
        self.replay = list(replay) if self.exit_thresholds is None and self.T > 0 else []
        for j in range(len(self.replay)):
            part = {**self.scorer.sizes(1), "site_spikes": L_, "site_sops": L_}
            part.update(site_messages=L_, exit_hist=self.T, timesteps=1)
            sizes.update({f"r{j}_{name}": size for name, size in part.items()})
        self.counts = Counts(sizes)
        self.results: dict[str, float | list[float]] = {}

    def test_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=ShardSampler(len(self.dataset), rank, world),
            num_workers=self.num_workers,
        )

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        if self.exit_thresholds is not None:
            self._exit_step(x, y)
            return
        if self.T == 0:
            self.net.set_mode("relu")
            logits = self.net(x).unsqueeze(0)
            spikes = torch.zeros(max(1, len(self.net.sites)), device=x.device)
            sops = messages = spikes
        else:
            per_step = simulate(self.net, x, self.T, self.chunk)
            logits = anytime_logits(per_step)
            every = {"site_spikes": spike_totals(self.net)}  # [L, T, B]
            if self._has_fanout():
                every.update(site_sops=sop_totals(self.net), site_messages=message_totals(self.net))
            spikes = every["site_spikes"].sum((1, 2))
            sops = every["site_sops"].sum((1, 2)) if "site_sops" in every else 0 * spikes
            messages = every["site_messages"].sum((1, 2)) if "site_messages" in every else sops
            if self.replay:
                self._replay_step(per_step, y, every)
        index = torch.tensor([t - 1 for t in self.steps], device=x.device)
        scored = self.scorer.counts(logits[index], y)
        self.counts.update(**scored, site_spikes=spikes, site_sops=sops, site_messages=messages)

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        """Hand freed activations back to the OS once 1 GiB of them piled up in the heap
        (:mod:`adacal.snn.runtime`): memory stays bounded over a long job, and most batches
        still reuse the kept memory."""
        release_free_memory(min_free_bytes=RELEASE_BYTES)

    def _exit_step(self, x: Tensor, y: Tensor) -> None:
        """IAT: simulate with early exit; count correct at exit, exit steps, spikes, SOPs and
        messages."""
        res = simulate_early_exit(
            self.net, x, self.T, self.exit_thresholds, self.confidence, chunk=self.exit_chunk
        )
        spikes = res.site_spikes
        sops = res.site_sops if res.site_sops is not None else 0 * spikes
        messages = res.site_messages if res.site_messages is not None else 0 * spikes
        self.counts.update(
            **self.scorer.counts(res.logits.unsqueeze(0), y),
            site_spikes=spikes,
            site_sops=sops,
            site_messages=messages,
            exit_hist=torch.bincount(res.exit_step - 1, minlength=self.T),
            timesteps=res.exit_step.sum().reshape(1),
        )

    def _replay_step(self, per_step: Tensor, y: Tensor, every: dict[str, Tensor]) -> None:
        """Score every replayed exit policy on this batch: per_step [T, B, ...] outputs,
        ``every`` the per-site per-step per-sample counts [L, T, B]."""
        means = running_means(per_step)
        for j, point in enumerate(self.replay):
            index = exit_index(means, point.eta, point.confidence)
            part = {
                **self.scorer.counts(at_exit(means, index).unsqueeze(0), y),
                **{name: counts_to_exit(c, index) for name, c in every.items()},
                "exit_hist": torch.bincount(index, minlength=self.T),
                "timesteps": (index + 1).sum().reshape(1),
            }
            self.counts.update(**{f"r{j}_{name}": value for name, value in part.items()})

    def _has_fanout(self) -> bool:
        return bool(self.net.sites) and all(s.fanout is not None for s in self.net.sites)

    def on_test_epoch_end(self) -> None:
        c = self.counts.totals()
        exits = self.exit_thresholds is not None
        self.results = self._summary(c, self.steps, exits)
        if self.replay:
            self.results["replay"] = {
                point.name: self._summary(
                    {k[len(f"r{j}_") :]: v for k, v in c.items() if k.startswith(f"r{j}_")},
                    [self.T],
                    exits=True,
                )
                for j, point in enumerate(self.replay)
            }
        self.counts.reset()
        per_site = self.results["site_spikes"]
        scalars = {k: v for k, v in self.results.items() if isinstance(v, float)}
        scalars.update({f"site{i}_spikes": v for i, v in enumerate(per_site)})
        self.log_dict(scalars)  # also returned by trainer.test (and by spawned DDP workers)

    def _summary(self, c: dict[str, Tensor], steps: list[int], exits: bool) -> dict[str, Any]:
        """Scores and per-image counts from the summed counts ``c`` (``exits``: also the
        accuracy at exit, the mean timesteps and the exit histogram)."""
        n = float(c["samples"].item())
        out: dict[str, Any] = {**self.scorer.scores(c, steps), **self.scorer.extras(c)}
        if exits:
            head = self.scorer.names[0]
            out.update(
                **{f"{head}_exit": out[f"{head}_t{self.T}"]},
                mean_timesteps=float(c["timesteps"].item()) / n,
                exit_hist=(c["exit_hist"] / n).tolist(),
            )
        per_site = (c["site_spikes"] / n).tolist()
        out.update(samples=n, spikes=float(sum(per_site)), site_spikes=per_site)
        if self.T and self._has_fanout():
            site_sops = (c["site_sops"] / n).tolist()
            out.update(sops=float(sum(site_sops)), site_sops=site_sops)
            site_messages = (c["site_messages"] / n).tolist()
            out.update(messages=float(sum(site_messages)), site_messages=site_messages)
        return out
