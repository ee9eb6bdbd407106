"""Early-exit wall time: IAT with c steps per forward pass against every image running T steps.

On the committed thin ResNet-20 (CIFAR-10) converted with burst neurons (φ = 4 at every site,
MSE thresholds per layer + bias calibration on ``--calib`` training images, the light recipe)
and IAT exit thresholds fitted on ``--fit`` training images (the paper's a = 0.6, b = 0.4,
entropy), this times on the first ``--images`` test images, for each T in ``--T``:

- ``full``: ``simulate(net, x, T, chunk=8)`` (every image T steps, as ``snn.chunk``);
- ``exit c=…``: ``simulate_early_exit(..., chunk=c)`` for each c in ``--chunks``
  (``inference.chunk``): exits decided per step, c steps simulated per forward pass.

Each row prints the mean exit step (the same for every c: checked), the accuracy at exit, the
time, and ``time / full`` next to ``steps / T`` (what an exit loop without overhead would
reach). Every row runs the same neuron loop (``--compile``: fused or eager; the default
``auto`` would switch loops mid-benchmark). The times are medians of ``--repeats`` runs
after one warm-up run, measured one after another in one process (``--clock cpu``: the
process's CPU time, steadiest on a loaded machine with ``--threads 1``).

    .venv/bin/python benchmarks/early_exit_speed.py --T 8 16 32 --threads 1 --clock cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from adacal.adaptive.iat import IATPolicy
from adacal.calibration import BiasCorrection
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate
from adacal.checkpoint import load_state_dict
from adacal.data.cifar import CIFARDataModule
from adacal.models import resnet20
from adacal.snn.convert import convert
from adacal.snn.early_exit import simulate_early_exit
from adacal.snn.neurons import BurstNeuron
from adacal.snn.runtime import tune_cpu_allocator
from adacal.snn.simulate import simulate

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, repeats: int, clock) -> tuple[float, object]:
    """(median seconds over ``repeats`` runs after one warm-up, the last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = clock()
        out = fn()
        times.append(clock() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/cifar10")
    parser.add_argument("--checkpoint", default="checkpoints/cifar10_resnet20.pt")
    parser.add_argument("--T", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calib", type=int, default=256)
    parser.add_argument("--fit", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument(
        "--compile",
        choices=["true", "false"],
        default="true",
        help="the neuron loop of every run (snn.compile): fused or eager, the same for all rows "
        "(auto would switch loops mid-benchmark after its rent)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    clock = CLOCKS[args.clock]

    model = resnet20(10)
    load_state_dict(model, args.checkpoint)
    dm = CIFARDataModule(root=args.root)
    calib, _, _ = dm.calibration_set(args.calib, 0)
    fit_x, fit_y, _ = dm.calibration_set(args.fit, 1)
    dm.setup()
    test_x = torch.stack([dm.test_set[i][0] for i in range(args.images)])
    test_y = torch.as_tensor([int(dm.test_set[i][1]) for i in range(args.images)])
    batches = list(zip(test_x.split(args.batch), test_y.split(args.batch), strict=True))
    print(f"thin ResNet-20, burst phi=4, {args.images} test images, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s), clock {args.clock}, "
          f"compile {args.compile}")  # fmt: skip
    print(f"{'T':>3} {'run':>10} {'steps':>6} {'steps/T':>8} {'acc %':>6} {'s':>8} {'s/full':>7}")
    for T in args.T:
        net = convert(model.eval(), BurstNeuron(phi=4), calib[:1])
        net.set_compiled(args.compile == "true")
        data = CalibrationData.from_network(net, calib, T, progress=False)
        calibrate(net, data, ThresholdSpec(), [BiasCorrection()])
        eta = IATPolicy().fit(net, fit_x, fit_y, T)

        def full(T: int = T, net=net) -> float:
            right = 0
            for x, y in batches:
                right += int((simulate(net, x, T, chunk=8).mean(0).argmax(1) == y).sum())
            return right / args.images

        full_s, acc = timed(full, args.repeats, clock)
        print(f"{T:>3} {'full':>10} {T:>6.2f} {1:>8.3f} {100 * acc:>6.2f} {full_s:>8.2f} {1:>7.3f}")
        seen = None
        for c in args.chunks:

            def exits(T: int = T, c: int = c, net=net, eta=eta) -> tuple[torch.Tensor, float]:
                steps, right = [], 0
                for x, y in batches:
                    res = simulate_early_exit(net, x, T, eta, "entropy", chunk=c)
                    steps.append(res.exit_step)
                    right += int((res.logits.argmax(1) == y).sum())
                return torch.cat(steps), right / args.images

            s, (steps, acc_exit) = timed(exits, args.repeats, clock)
            if seen is not None and not torch.equal(seen, steps):
                raise SystemExit(f"T={T} chunk={c}: exit steps differ from chunk={args.chunks[0]}")
            seen = steps
            mean = float(steps.double().mean())
            print(f"{T:>3} {f'exit c={c}':>10} {mean:>6.2f} {mean / T:>8.3f} "
                  f"{100 * acc_exit:>6.2f} {s:>8.2f} {s / full_s:>7.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
