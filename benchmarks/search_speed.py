"""Wall time of AdaFire's φ search + SSC with and without prefix reuse, in one run.

On the committed thin ResNet-20 (CIFAR-10), T = 8, one calibration batch of 128
training images (the issue's setting): thresholds (MSE) → φ search (φ ∈ [1, 8],
target 4) → bias correction → SSC (ratios 1.0 … 10.0). The same network and data
are searched twice, with ``reuse_prefix`` on and off, and the chosen φ and ratios
must agree. Prints the times of each phase, simulated site-steps, and the ratios.

    .venv/bin/python benchmarks/search_speed.py --root data/cifar10

(extract ../shared/data/cifar10-jpeg.tar.gz into data/ first; see the README).
"""

from __future__ import annotations

import argparse
import time

import torch

from adacal.adaptive.compression import SpikeCompression
from adacal.adaptive.search import search_for
from adacal.calibration import BiasCorrection
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, fit_thresholds, site_threshold
from adacal.checkpoint import load_state_dict
from adacal.data.cifar import CIFARDataModule
from adacal.models import resnet20
from adacal.snn.convert import convert
from adacal.snn.neurons import AdaFireNeuron
from adacal.snn.runtime import tune_cpu_allocator


def search_once(model, images, T, reuse: bool) -> dict:
    """Thresholds, φ search, bias correction, SSC; returns timings and choices."""
    neuron = AdaFireNeuron(
        phi_init=8,
        phi_target=4,
        phi_min=1,
        batch_size=len(images),
        sub_batch=32,
        reuse_prefix=reuse,
    )
    net = convert(model, neuron, images[:1])
    data = CalibrationData.from_network(net, images, T, chunk=T, progress=False)
    spec = ThresholdSpec()
    start = time.perf_counter()
    net.set_T(T)
    fit_thresholds(net, data, spec)
    thresholds_s = time.perf_counter() - start

    def refit(k: int, phi: int) -> torch.Tensor:
        return site_threshold(data.ann[k], spec, T, phi)

    phi = search_for(neuron)(net, data, refit)
    start = time.perf_counter()
    BiasCorrection()(net, data)
    bias_s = time.perf_counter() - start
    ssc = SpikeCompression(batch_size=len(images), sub_batch=32, reuse_prefix=reuse)(net, data)
    return {
        "thresholds_s": thresholds_s,
        "phi_fit_s": phi["threshold_fit_s"],
        "phi_search_s": phi["seconds"] - phi["threshold_fit_s"],
        "bias_s": bias_s,
        "ssc_s": ssc["seconds"],
        "site_steps": phi["site_steps"] + ssc["site_steps"],
        "phi": phi["phi"],
        "ratio": ssc["ratio"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/cifar10")
    parser.add_argument("--checkpoint", default="checkpoints/cifar10_resnet20.pt")
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--images", type=int, default=128)
    args = parser.parse_args()
    tune_cpu_allocator()
    torch.manual_seed(0)
    dm = CIFARDataModule(num_classes=10, root=args.root)
    dm.setup()
    images = dm.calibration_set(args.images, 0)[0]
    model = resnet20(10, width="thin")
    load_state_dict(model, args.checkpoint)
    model.eval()
    print(f"threads={torch.get_num_threads()} T={args.T} images={args.images}")
    runs = {}
    for reuse in (True, False):
        r = search_once(model, images, args.T, reuse)
        total = r["thresholds_s"] + r["phi_fit_s"] + r["phi_search_s"] + r["bias_s"] + r["ssc_s"]
        r["total_s"] = total
        runs[reuse] = r
        print(
            f"reuse={reuse!s:5}  thresholds {r['thresholds_s']:.1f}s  φ-threshold fits "
            f"{r['phi_fit_s']:.1f}s  φ search {r['phi_search_s']:.1f}s  bias {r['bias_s']:.1f}s  "
            f"SSC {r['ssc_s']:.1f}s  total {total:.1f}s  site-steps {r['site_steps']:,}"
        )
    on, off = runs[True], runs[False]
    assert on["phi"] == off["phi"] and on["ratio"] == off["ratio"], "reuse changed the choice"
    search_on = on["phi_search_s"] + on["ssc_s"]
    search_off = off["phi_search_s"] + off["ssc_s"]
    print(f"chosen φ: {on['phi']}\nchosen ratios: {on['ratio']}")
    print(f"search (φ + SSC simulation) speed-up with reuse: {search_off / search_on:.2f}x")
    print(f"whole pipeline speed-up with reuse: {off['total_s'] / on['total_s']:.2f}x")
    print(f"site-steps saved: {1 - on['site_steps'] / off['site_steps']:.1%}")


if __name__ == "__main__":
    main()
