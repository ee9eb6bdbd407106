"""Side by side with SpikingJelly: the same ANN, images and T; accuracy and SNN/(T·ANN).

Both sides convert the committed thin ResNet-20 (``checkpoints/cifar10_resnet20.pt``,
sha256-checked) with IF neurons, reset by subtraction, max-norm thresholds from the same
``--calib`` training images (no calibration), and simulate ``--images`` CIFAR-10 test images
(a fixed random subset, seed 0) for T steps in chunks of ``--chunk`` steps, direct encoding:

- ``adacal``: ``convert(model, IFNeuron())`` (BatchNorm folded, the analog stem run once per
  chunk at batch B), θ = per-site max of the pre-activations, v(0) = θ/2, ``simulate`` with
  the default neuron loop (``snn.compile=auto``: the fused kernel, :mod:`adacal.snn.fused`);
- ``spikingjelly``: ``ann2snn.Converter(mode="max")`` (BatchNorm fused by SpikingJelly; each
  ReLU becomes VoltageScaler(1/s), ``IFNode(v_threshold=1, v_reset=None)``,
  VoltageScaler(s)), the IF nodes in multi-step mode (``step_mode="m"``, backend ``"torch"``,
  SpikingJelly's fastest CPU backend: its TorchScript eval loop) on the ``[Tc, B, ...]`` view
  of the time-folded batch, every other layer on ``[Tc·B, ...]`` (SeqToANNContainer style),
  the input repeated Tc times per chunk; v(0) = 0.5 (= θ/2 after the 1/s scaling; ``--sj-v0
  zero`` keeps SpikingJelly's default 0).

Per (T, batch): the accuracy after T steps, the wall or CPU time of the whole simulation of
all images, SNN/(T·ANN) (ANN: the unconverted model on the same batches) and the dense floor
(adacal's converted graph with its sites in ``relu`` mode over the same chunks). SpikingJelly
is an optional, benchmark-only dependency (``benchmarks/requirements-peer.txt``)::

    .venv/bin/pip install --no-deps -r benchmarks/requirements-peer.txt
    .venv/bin/python benchmarks/peer_spikingjelly.py --threads 1 --clock cpu --T 32 --batch 128
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from adacal.calibration.recipe import observed_max_thresholds
from adacal.checkpoint import load_state_dict
from adacal.data.cifar import CIFARDataModule
from adacal.models import resnet20
from adacal.snn.convert import SpikingNetwork, convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.runtime import tune_cpu_allocator
from adacal.snn.simulate import chunks, simulate

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class FoldedIF(nn.Module):
    """A multi-step SpikingJelly node on the time-folded batch: [Tc·B, ...] -> [Tc, B, ...]."""

    def __init__(self, node: nn.Module) -> None:
        super().__init__()
        self.node = node
        self.steps = 1

    def forward(self, x: Tensor) -> Tensor:
        return self.node(x.reshape(self.steps, -1, *x.shape[1:])).reshape(x.shape)


def spikingjelly_network(
    model: nn.Module, calib: Tensor, v0: float
) -> tuple[nn.Module, list[FoldedIF]]:
    """SpikingJelly's max-norm conversion of ``model`` with multi-step IF nodes (see top)."""
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.ann2snn import Converter

    snn = Converter(dataloader=[(calib, None)], mode="max")(copy.deepcopy(model)).eval()
    folded = []
    for name, module in list(snn.named_modules()):
        if isinstance(module, neuron.IFNode):
            module.step_mode, module.backend = "m", "torch"
            module._memories_rv["v"] = v0  # the value reset_net restores
            parent, child = name.rsplit(".", 1)
            wrapper = FoldedIF(module)
            setattr(snn.get_submodule(parent), child, wrapper)
            folded.append(wrapper)
    return snn, folded


@torch.no_grad()
def run_spikingjelly(snn: nn.Module, folded: list[FoldedIF], x: Tensor, T: int, chunk: int):
    """Σ_t y(t) [B, K] over T steps of x [B, C, H, W] (input repeated Tc times per chunk)."""
    from spikingjelly.activation_based import functional

    functional.reset_net(snn)
    total = None
    for steps in chunks(T, chunk):
        for f in folded:
            f.steps = steps
        xs = x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * x.shape[0], *x.shape[1:])
        y = snn(xs).reshape(steps, x.shape[0], -1).sum(0)
        total = y if total is None else total + y
    return total


@torch.no_grad()
def dense_floor(net: SpikingNetwork, x: Tensor, T: int, chunk: int) -> None:
    """adacal's converted graph with ReLU sites over the same chunks (no neuron dynamics)."""
    net.set_mode("relu")
    for steps in chunks(T, chunk):
        net.set_steps(steps)
        net(x)
    net.set_steps(1)


def timed(clock: Callable[[], float], fn: Callable[[Tensor], object], batches: list[Tensor]):
    """(seconds, outputs) of ``fn`` over all batches, after one warm-up call on the first."""
    fn(batches[0])
    start = clock()
    outs = [fn(b) for b in batches]
    return clock() - start, outs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="data/cifar10")
    p.add_argument("--checkpoint", default="checkpoints/cifar10_resnet20.pt")
    p.add_argument("--images", type=int, default=500, help="test images (random subset)")
    p.add_argument("--calib", type=int, default=512, help="training images for the max")
    p.add_argument("--T", type=int, nargs="+", default=[32, 128])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 500])
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=list(CLOCKS), default="wall")
    p.add_argument("--sj-v0", choices=["half", "zero"], default="half")
    p.add_argument("--no-dense", dest="dense", action="store_false")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    tune_cpu_allocator()

    model = resnet20(10, width="thin")
    load_state_dict(model, args.checkpoint)
    model.eval()
    dm = CIFARDataModule(root=args.root)
    dm.setup()
    pick = torch.randperm(len(dm.test_set), generator=torch.Generator().manual_seed(0))
    items = [dm.test_set[i] for i in pick[: args.images].tolist()]
    images, labels = torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
    calib = dm.calibration_set(args.calib, 0)[0]

    net = convert(model, IFNeuron(), calib[:1])
    observed_max_thresholds(net, calib)
    sj, folded = spikingjelly_network(model, calib, 0.5 if args.sj_v0 == "half" else 0.0)

    from importlib.metadata import version

    print(
        f"torch {torch.__version__}, spikingjelly {version('spikingjelly')}, "
        f"threads {torch.get_num_threads()}, clock {args.clock}, {args.images} test images, "
        f"chunk {args.chunk}, SpikingJelly v(0) {args.sj_v0}\n"
    )
    print(
        "| T | batch | ANN acc | adacal acc | SJ acc | ANN s | dense s | adacal s | SJ s "
        "| dense/(T·ANN) | adacal/(T·ANN) | SJ/(T·ANN) | SJ/adacal |"
    )
    print("|" + "---|" * 13, flush=True)
    for T in args.T:
        net.set_T(T)
        for batch in args.batch:
            batches = list(images.split(batch))
            with torch.no_grad():
                ann_s, ann_out = timed(clock, model, batches)
            ours_s, ours_out = timed(
                clock, lambda b, T=T: simulate(net, b, T, args.chunk).sum(0), batches
            )
            sj_s, sj_out = timed(
                clock, lambda b, T=T: run_spikingjelly(sj, folded, b, T, args.chunk), batches
            )
            dense_s = float("nan")
            if args.dense:
                dense_s, _ = timed(
                    clock, lambda b, T=T: dense_floor(net, b, T, args.chunk), batches
                )

            def acc(outs: list[Tensor]) -> float:
                return (torch.cat(outs).argmax(1) == labels).float().mean().item() * 100

            print(
                f"| {T} | {batch} | {acc(ann_out):.2f} | {acc(ours_out):.2f} | {acc(sj_out):.2f} "
                f"| {ann_s:.2f} | {dense_s:.1f} | {ours_s:.1f} | {sj_s:.1f} "
                f"| {dense_s / (T * ann_s):.3f} | {ours_s / (T * ann_s):.3f} "
                f"| {sj_s / (T * ann_s):.3f} | {sj_s / ours_s:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
