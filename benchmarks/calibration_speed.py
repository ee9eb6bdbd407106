"""Wall time of SNN Calibration's site-by-site bias, potential and weight calibration with and
without prefix reuse, measured side by side in one run.

Without reuse, correcting site k re-simulates the network from the image up to site k, so
the step costs Σ_k depth_k site-evaluations (quadratic in depth). With reuse
(``rates_in_order``) the graph runs once, node by node, keeping the fx frontier; after site
k is corrected only site k is run again (for weight calibration: site k's region, recomputed
with its new weights, then site k). Both must give the same biases, potentials and weights.

    .venv/bin/python benchmarks/calibration_speed.py --root data/cifar10
    .venv/bin/python benchmarks/calibration_speed.py --camvid data/camvid   # segmentation

(extract ../shared/data/*.tar.gz into data/ first; see the README).
"""

from __future__ import annotations

import argparse
import time

import torch

from adacal.calibration import BiasCorrection, PotentialCalibration, WeightCalibration
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, fit_thresholds
from adacal.checkpoint import load_state_dict
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.runtime import tune_cpu_allocator


def cifar(root: str, n: int):
    from adacal.data.cifar import CIFARDataModule
    from adacal.models import resnet20

    model = resnet20(10)
    load_state_dict(model, "checkpoints/cifar10_resnet20.pt")
    dm = CIFARDataModule(root=root)
    return "CIFAR-10 thin ResNet-20", model.eval(), dm.calibration_set(n, 0)[0]


def camvid(root: str, n: int):
    from adacal.data.camvid import CamVidDataModule
    from adacal.models.segmentation import segmentation_model

    model = segmentation_model("deeplabv3plus", num_classes=11, encoder_depth=4,
                               decoder_channels=128)  # fmt: skip
    load_state_dict(model, "checkpoints/camvid_deeplabv3plus_resnet18.pt")
    dm = CamVidDataModule(root=root, load_size=[144, 192], crop_size=[144, 192])
    return "CamVid DeepLabV3+ ResNet-18 (144x192)", model.eval(), dm.calibration_set(n, 0)[0]


def calibrate_once(model, images, T: int, step, reuse: bool, batch: int) -> tuple[float, list]:
    net = convert(model, IFNeuron(), images[:1])
    data = CalibrationData.from_network(net, images, T, chunk=T, batch_size=batch, progress=False)
    net.set_T(T)
    fit_thresholds(net, data, ThresholdSpec(method="max"))
    start = time.perf_counter()
    step(reuse_prefix=reuse)(net, data)
    seconds = time.perf_counter() - start
    state = [torch.cat([s.bias.flatten(), s.v_delta.flatten()]) for s in net.sites]
    return seconds, state + [p.detach().flatten() for p in net.parameters()]


def weight_step(iterations: int):
    """The advanced pipeline's weight step with ``iterations`` SGD steps per site."""

    def make(reuse_prefix: bool) -> WeightCalibration:
        return WeightCalibration(samples=None, iterations=iterations, lr=1e-4,
                                 reuse_prefix=reuse_prefix)  # fmt: skip

    make.__name__ = f"WeightCalibration ({iterations} it/site)"
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/cifar10", help="CIFAR-10 ImageFolder root")
    parser.add_argument("--camvid", default=None, help="CamVid root (benchmarks that instead)")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100, help="weight step: SGD steps/site")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    name, model, images = (camvid if args.camvid else cifar)(args.camvid or args.root, args.images)
    sites = len(convert(model, IFNeuron(), images[:1]).sites)
    print(f"{name}: {sites} sites, {len(images)} images, T = {args.T}, {args.threads} threads")
    print("| step | reuse on (s) | reuse off (s) | speed-up | max |Δ| |")
    print("|---|---:|---:|---:|---:|")
    for step in (BiasCorrection, PotentialCalibration, weight_step(args.iterations)):
        fast, a = calibrate_once(model, images, args.T, step, True, args.batch)
        slow, b = calibrate_once(model, images, args.T, step, False, args.batch)
        diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
        print(f"| {step.__name__} | {fast:.1f} | {slow:.1f} | {slow / fast:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
