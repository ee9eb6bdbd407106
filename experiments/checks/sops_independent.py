"""Second, independent count of the synaptic operations of the thin ResNet-20 (CIFAR-10).

The pipeline counts ACs from fan-out maps (autograd through a unit-weight copy of the
graph, ``adacal.metrics.energy``). Here, on a few test images, every conv/linear layer's
actual spiking input is captured with hooks and its ACs are recomputed directly:
conv: C_out/groups × Σ conv2d(events, ones kernel, same stride/padding/dilation);
linear after global average pooling: out_features × Σ events of the feeding site.
Both counts must agree (printed side by side, per layer and in total).

    .venv/bin/python experiments/checks/sops_independent.py --root data/cifar10
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from adacal.calibration.recipe import observed_max_thresholds
from adacal.checkpoint import load_state_dict
from adacal.data.cifar import CIFARDataModule
from adacal.metrics.energy import attach_fanout, dense_macs
from adacal.models import resnet20
from adacal.snn.convert import convert
from adacal.snn.neurons import BurstNeuron
from adacal.snn.simulate import simulate, sop_totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/cifar10")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--phi", type=int, default=4)
    args = parser.parse_args()
    dm = CIFARDataModule(num_classes=10, root=args.root)
    dm.setup()
    x = torch.stack([dm.test_set[i][0] for i in range(args.images)])
    model = resnet20(10, width="thin")
    load_state_dict(model, "checkpoints/cifar10_resnet20.pt")
    net = convert(model.eval(), BurstNeuron(phi=args.phi), x[:1])
    observed_max_thresholds(net, x)
    for site in net.sites:
        site.theta = site.theta / args.phi  # ceiling φθ = max: bursts of several spikes occur
    net.set_T(args.T)
    attach_fanout(net, x[:1])
    site_out: dict[int, torch.Tensor] = {}
    layer_in: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [
        s.register_forward_hook(lambda m, i, o, k=k: site_out.__setitem__(k, o.detach()))
        for k, s in enumerate(net.sites)
    ]
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(
                module.register_forward_pre_hook(lambda m, i: layer_in.append((m, i[0].detach())))
            )
    simulate(net, x, args.T, chunk=args.T)  # one chunk: every hook sees all T steps
    for h in hooks:
        h.remove()
    pipeline_acs = float(sop_totals(net).sum())
    independent = 0.0
    for module, inp in layer_in:
        if isinstance(module, nn.Conv2d):
            source = [
                k for k, o in site_out.items() if o.shape == inp.shape and torch.equal(o, inp)
            ]
            if not source:
                print(f"dense  {module}: input is analog (the first conv)")
                continue
            site = net.sites[source[0]]
            events = inp / site.theta.reshape(1, -1, 1, 1)
            ones = torch.ones(1, 1, *module.kernel_size)
            per_pos = F.conv2d(
                events.sum(1, keepdim=True),
                ones,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
            )
            acs = module.out_channels // module.groups * float(per_pos.sum())
        else:  # the classifier after global average pooling of the last site
            site = net.sites[-1]
            events = site_out[len(net.sites) - 1] / site.theta.reshape(1, -1, 1, 1)
            acs = module.out_features * float(events.sum())
        independent += acs
    print(f"dense MACs per image per step: {dense_macs(net, x[:1]):,.0f}")
    print(f"ACs, pipeline (fan-out maps): {pipeline_acs:,.1f}")
    print(f"ACs, independent (hooks + unit-kernel convs): {independent:,.1f}")
    print(f"relative difference: {abs(pipeline_acs - independent) / independent:.2e}")


if __name__ == "__main__":
    main()
