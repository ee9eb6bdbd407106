"""Simulation speed: SNN time over T steps against T dense ANN forwards, on the same batch.

For each model this times, on one random batch x [B, 3, 32, 32]:

- ``ANN``: the model's forward (eval mode, ``torch.no_grad``, BatchNorm unfolded);
- ``SNN``: ``simulate(net, x, T, chunk)`` of the converted network (IF neurons, or with
  ``--neuron burst`` burst neurons with φ = 4 at every site; per-site max thresholds from
  one observe pass on x, ``set_T(T)``), with the neuron loop of each ``--variants`` entry:
  ``fused`` (the default loop, :mod:`adacal.snn.fused`, as ``snn.compile=true``) and
  ``eager`` (the in-place step loop, ``snn.compile=false``);

and prints ``ratio = SNN / (T x ANN)``. The project's goal is ratio <= 1.10; a dense
simulation cannot go below ~1.0 (every step costs one forward of the batch). ``compile s``
is the time the fused variant spent compiling (its warm-up run, not in the timings).

With ``--breakdown`` (on by default) it also reports where the SNN time goes:

- ``dense``: the converted network with its sites in ``relu`` mode, run over the same
  chunks of the [Tc*B] time-folded batch (TimeExpand, folded BN, same graph): the floor
  of the simulation, i.e. everything except the neuron dynamics;
- ``sites``: time spent inside ``Site.forward`` in ``spike`` mode (forward hooks);
- ``site share`` = sites / SNN, and ``overhead`` = (SNN - dense) / dense.

Run (CPU, the required configuration)::

    .venv/bin/python benchmarks/simulation_speed.py --batch 128 --T 32

Quick check::

    .venv/bin/python benchmarks/simulation_speed.py --batch 16 --T 8 --repeats 1

On a GPU::

    python benchmarks/simulation_speed.py --device cuda --dtype bf16 --clock wall
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from adacal.calibration.recipe import observed_max_thresholds
from adacal.models import resnet20, vgg16
from adacal.snn import fused
from adacal.snn.convert import SpikingNetwork, convert
from adacal.snn.neurons import BurstNeuron, IFNeuron
from adacal.snn.runtime import tune_cpu_allocator
from adacal.snn.simulate import chunks, simulate

NEURONS: dict[str, Callable[[], IFNeuron]] = {
    "if": IFNeuron,
    "burst": lambda: BurstNeuron(phi=4),  # φ = 4 at every site
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet20": lambda: resnet20(10, width="thin"),
    "vgg16": lambda: vgg16(10),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "cpu": time.process_time,  # CPU time of this process (all its threads)
}
clock = CLOCKS["wall"]


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median time of ``fn`` in ms (``clock``) over ``repeats`` runs, after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        _sync(device)
        times.append((clock() - start) * 1e3)
    return statistics.median(times)


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BN layers non-trivial eval statistics (an untrained model has mean 0, var 1)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@torch.no_grad()
def dense_chunks(net: SpikingNetwork, x: Tensor, T: int, chunk: int) -> None:
    """The simulation's graph with ReLU sites: the dense floor of ``simulate``."""
    net.set_mode("relu")
    for steps in chunks(T, chunk):
        net.set_steps(steps)
        net(x)
    net.set_steps(1)


@torch.no_grad()
def site_time_ms(net: SpikingNetwork, x: Tensor, T: int, chunk: int, device: torch.device) -> float:
    """Time (ms) spent inside ``Site.forward`` during one ``simulate`` (forward hooks)."""
    total = [0.0]
    starts: dict[int, float] = {}

    def pre(module: nn.Module, _args: object) -> None:
        _sync(device)
        starts[id(module)] = clock()

    def post(module: nn.Module, _args: object, _out: object) -> None:
        _sync(device)
        total[0] += clock() - starts[id(module)]

    handles = []
    for site in net.sites:
        handles.append(site.register_forward_pre_hook(pre))
        handles.append(site.register_forward_hook(post))
    try:
        simulate(net, x, T, chunk)
    finally:
        for h in handles:
            h.remove()
    return total[0] * 1e3


def bench(
    name: str,
    neuron: str,
    dtype: torch.dtype,
    batch: int,
    T: int,
    chunk_sizes: list[int],
    repeats: int,
    device: torch.device,
    breakdown: bool,
    variants: list[str],
) -> list[dict[str, object]]:
    torch.manual_seed(0)
    model = randomise_bn(MODELS[name]()).to(device).eval()
    x = torch.randn(batch, 3, 32, 32, device=device)
    net = convert(model, NEURONS[neuron](), x[:1]).to(device)
    observed_max_thresholds(net, x)
    net.set_T(T)
    model, net, x = model.to(dtype), net.to(dtype), x.to(dtype)

    with torch.no_grad():
        ann = time_ms(lambda: model(x), device, repeats)
    rows = []
    for chunk, variant in [(c, v) for c in chunk_sizes for v in variants]:
        net.set_compiled(variant == "fused")  # the warm-up run compiles
        compile_s = fused.compile_seconds()
        snn = time_ms(lambda c=chunk: simulate(net, x, T, c), device, repeats)
        row: dict[str, object] = {
            "model": name,
            "neuron": neuron if neuron == "if" else "burst φ=4",
            "neuron loop": variant,
            "compile_s": fused.compile_seconds() - compile_s,
            "batch": batch,
            "T": T,
            "chunk": chunk,
            "ann": ann,
            "snn": snn,
            "ratio": snn / (T * ann),
        }
        if breakdown:
            dense = time_ms(lambda c=chunk: dense_chunks(net, x, T, c), device, repeats)
            sites = site_time_ms(net, x, T, chunk, device)
            row.update(
                dense=dense,
                dense_ratio=dense / (T * ann),
                sites=sites,
                site_share=sites / snn,
                overhead=(snn - dense) / dense,
            )
        rows.append(row)
        print(_format_row(row, breakdown), flush=True)
    return rows


HEAD = (
    "| model | neuron | neuron loop | compile s | batch | T | chunk | ANN ms | SNN ms "
    "| ratio SNN/(T·ANN) |"
)
HEAD_BD = " dense ms | dense/(T·ANN) | in sites ms | site share | SNN/dense − 1 |"


def _header(breakdown: bool) -> str:
    head = HEAD + (HEAD_BD if breakdown else "")
    cols = head.count("|") - 1
    return head + "\n" + "|" + "---|" * cols


def _format_row(r: dict[str, object], breakdown: bool) -> str:
    s = (
        f"| {r['model']} | {r['neuron']} | {r['neuron loop']} | {r['compile_s']:.1f} | "
        f"{r['batch']} | {r['T']} | {r['chunk']} | "
        f"{r['ann']:.1f} | "
        f"{r['snn']:.1f} | {r['ratio']:.3f} |"
    )
    if breakdown:
        s += (
            f" {r['dense']:.1f} | {r['dense_ratio']:.3f} | {r['sites']:.1f} | "
            f"{r['site_share']:.1%} | {r['overhead']:+.1%} |"
        )
    return s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8, help="timesteps per chunk (default 8)")
    p.add_argument(
        "--sweep-chunk",
        action="store_true",
        help="also time chunk = 4, 8, 16, 32 (capped at T)",
    )
    p.add_argument("--repeats", type=int, default=3, help="median of N runs after 1 warm-up")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="activations' dtype")
    p.add_argument("--neuron", nargs="+", choices=list(NEURONS), default=["if"])
    p.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: process CPU time (steadier on a loaded CPU machine; "
        "CPU device only, and with --threads 1 so that idle-spinning threads are not counted)",
    )
    p.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip the dense floor and the time-in-sites measurements",
    )
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's default allocator settings (the pipeline applies "
        "adacal.snn.runtime.tune_cpu_allocator on the CPU; so does this script by default)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=["fused", "eager"],
        choices=["fused", "eager"],
        help="neuron loop: fused (the default, snn.compile=auto|true) and/or eager "
        "(snn.compile=false)",
    )
    args = p.parse_args()

    global clock
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        p.error("--clock cpu measures host CPU time; use --clock wall on an accelerator")
    clock = CLOCKS[args.clock]
    tuned = False if args.default_malloc else tune_cpu_allocator()
    chunk_sizes = [args.chunk]
    if args.sweep_chunk:
        chunk_sizes = sorted({min(c, args.T) for c in (args.chunk, 4, 8, 16, 32)})

    print(
        f"torch {torch.__version__}, device {device}, dtype {args.dtype}, "
        f"threads {torch.get_num_threads()}, "
        f"clock {args.clock}, tuned allocator {tuned}, "
        f"repeats {args.repeats} (median, after 1 warm-up)\n"
    )
    print(_header(args.breakdown), flush=True)
    rows = []
    for name, neuron in [(m, n) for m in args.models for n in args.neuron]:
        rows += bench(
            name,
            neuron,
            DTYPES[args.dtype],
            args.batch,
            args.T,
            chunk_sizes,
            args.repeats,
            device,
            args.breakdown,
            args.variants,
        )
    if args.breakdown:
        print(
            "\ndense: the converted graph with sites in relu mode over the same [Tc·B] chunks "
            "(the floor of a dense simulation); in sites: time inside Site.forward in spike "
            "mode; SNN/dense − 1: the cost of the neuron dynamics over the floor."
        )
    best = min(rows, key=lambda r: float(r["ratio"]))  # type: ignore[arg-type]
    print(
        f"\nbest ratio: {best['ratio']:.3f} ({best['model']}, chunk {best['chunk']}); goal: <= 1.10"
    )


if __name__ == "__main__":
    main()
