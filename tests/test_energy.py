"""Energy metrics: fan-out maps, SOP counts, MACs and energy against hand-derived numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adacal.metrics.energy import (
    E_AC_PJ,
    E_MAC_PJ,
    ann_macs,
    attach_fanout,
    dense_macs,
    energy_pj,
    snn_energy,
    synaptic_layers,
)
from adacal.models import resnet20
from adacal.snn.convert import convert
from adacal.snn.neurons import BurstNeuron, IFNeuron
from adacal.snn.simulate import simulate, sop_totals, spike_totals


def _two_layer() -> nn.Sequential:
    """[1, 1, 5, 5] -> conv(1->2, k3 s2 p1) [2, 3, 3] -> ReLU -> conv(2->3, k3 s2 p1) [3, 2, 2]
    -> ReLU -> flatten [12] -> linear(12 -> 4). Weights chosen so the spikes are easy to follow."""
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(2, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12, 4),
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.zero_()
                m.bias.zero_()
        model[0].weight[0, 0, 1, 1] = 1.0  # site0 ch0 (y, x) = image (2y, 2x)
        model[2].weight[0, 0, 1, 1] = 0.5  # site1 ch0 (y, x) input = 0.5 · site0 ch0 (2y, 2x)
    return model


def test_two_layer_network_by_hand():
    example = torch.zeros(1, 1, 5, 5)
    net = convert(_two_layer(), BurstNeuron(phi=3), example)
    for site in net.sites:
        site.theta = torch.tensor([1.0])
    # MACs = C_out · ΠH_out · C_in/groups · Πk:  conv1 2·(3·3)·1·9 = 162, conv2 3·(2·2)·2·9 = 216,
    # linear 12·4 = 48. Only conv1 reads the image (dense); conv2 and the linear read sites.
    layers = synaptic_layers(net, example)
    assert [(la.name, la.kind, la.macs) for la in layers] == [
        ("0", "dense", 162.0),
        ("2", "event", 216.0),
        ("5", "event", 48.0),
    ]
    assert ann_macs(net, example) == 426.0 and dense_macs(net, example) == 162.0

    attach_fanout(net, example)
    # site0 [2, 3, 3] -> conv2 k3 s2 p1 (3x3 -> 2x2): output row o reads input rows 2o-1..2o+1,
    # so input rows 0, 1, 2 are read by 1, 2, 1 output rows. Fan-out = r(y)·r(x)·C_out(3):
    # corners 1·3, edges 2·3, centre 4·3, the same for both channels.
    r = torch.tensor([1.0, 2.0, 1.0])
    expected0 = (3 * torch.outer(r, r)).expand(2, 3, 3)
    assert torch.equal(net.sites[0].fanout, expected0)
    # site1 [3, 2, 2] -> flatten -> linear(12 -> 4): 4 synapses each
    assert torch.equal(net.sites[1].fanout, torch.full((3, 2, 2), 4.0))
    assert all(s.fanout.dtype == torch.float32 for s in net.sites)

    # Image: 2.5 at (2, 2) -> site0 ch0 centre (1, 1) gets 2.5 per step; 1.0 at (0, 0) -> corner.
    # Burst φ = 3, v(0) = θ/2 = 0.5, θ = 1:
    #   centre: v = 3.0 -> n = 3, v = 0;  v = 2.5 -> n = 2, v = 0.5;  v = 3.0 -> n = 3
    #   corner: v = 1.5 -> n = 1, v = 0.5 every step
    # site0 events per step: n_c·12 + n_corner·3 = 39, 27, 39.
    # site1 ch0 (0, 0) gets 0.5·(n_corner·θ) = 0.5 per step: v = 1.0 -> 1, v = 0 -> 0.5 -> 0,
    # v = 1.0 -> 1; site1 events 4, 0, 4 (fan-out 4). No other neuron ever fires.
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2], x[0, 0, 0, 0] = 2.5, 1.0
    simulate(net, x, 3, chunk=2)
    assert spike_totals(net)[:, :, 0].tolist() == [[4.0, 3.0, 4.0], [1.0, 0.0, 1.0]]
    sops = sop_totals(net)
    assert sops.shape == (2, 3, 1)
    assert sops[:, :, 0].tolist() == [[39.0, 27.0, 39.0], [4.0, 0.0, 4.0]]

    # energy over 3 steps: ACs = 105 + 8 = 113, dense MACs = 162·3 = 486
    acs = float(sops.sum())
    report = snn_energy(acs, dense_macs(net, example), 3, ann_macs(net, example))
    assert report.sops == pytest.approx(113 + 486)
    assert report.dense_macs == pytest.approx(486)
    assert report.energy_pj == pytest.approx(4.6 * 486 + 0.9 * 113)  # 2337.3
    assert report.ann_energy_pj == pytest.approx(4.6 * 426)  # 1959.6
    assert report.saving_vs_ann == pytest.approx(1 - 2337.3 / 1959.6)
    assert (E_MAC_PJ, E_AC_PJ) == (4.6, 0.9)
    assert energy_pj(10, 20) == pytest.approx(46 + 18)
    assert energy_pj(10, 20, e_mac=1.0, e_ac=2.0) == pytest.approx(50)
    # early exit: a fractional mean number of steps
    assert snn_energy(100.0, 10.0, 2.5, 50.0).energy_pj == pytest.approx(4.6 * 25 + 90)


class _MeanHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


@pytest.mark.parametrize(
    ("pool", "counts"),
    [
        (nn.AdaptiveAvgPool2d(1), torch.ones(5, 5)),
        (_MeanHW(), torch.ones(5, 5)),
        # 5 -> 2: windows rows 0..2 and 2..4 (⌊o·5/2⌋ .. ⌈(o+1)·5/2⌉), row 2 is in both
        (nn.AdaptiveAvgPool2d(2), torch.outer(*[torch.tensor([1.0, 1, 2, 1, 1])] * 2)),
        # 2x2 windows, stride 2, no padding: row/col 4 is dropped (floor mode)
        (nn.AvgPool2d(2), torch.outer(*[torch.tensor([1.0, 1, 1, 1, 0])] * 2)),
    ],
)
def test_average_pooling_then_linear_has_fanout_out_features(pool, counts):
    torch.manual_seed(0)
    probe = nn.Sequential(pool, nn.Flatten())
    features = probe(torch.zeros(1, 4, 5, 5)).shape[1]
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        pool,
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(features, 5),
        nn.Linear(5, 2),  # reads another synaptic layer directly: dense
    )
    example = torch.randn(1, 3, 5, 5)
    net = convert(model, IFNeuron(), example)
    net.train()  # dropout must not change the counts, nor the modes
    attach_fanout(net, example)
    assert all(m.training for m in net.modules())
    # every pooling window a neuron lies in gives 5 synapses (out_features)
    assert torch.equal(net.sites[0].fanout, (5 * counts).expand(4, 5, 5))
    kinds = [(la.name, la.kind) for la in synaptic_layers(net, example)]
    assert kinds == [("0", "dense"), ("5", "event"), ("6", "dense")]
    assert dense_macs(net, example) == 4 * 25 * 3 * 9 + 5 * 2


class _ResGroup(nn.Module):
    """a = relu(conv0(x)); b = relu(conv1(a)) (groups 2); e = relu(conv_e(a));
    c = relu(conv2(b) + a + e); out = fc(mean_hw(c) · 2 / 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.conv_e = nn.Conv2d(4, 4, 1)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.conv0(x))
        b = F.relu(self.conv1(a))
        e = torch.relu(self.conv_e(a))
        c = (self.conv2(b) + a + e).relu()
        return self.fc(torch.mean(c, (2, 3)).mul(2.0) / 4)


def test_residual_add_and_grouped_conv_follow_path_counts():
    example = torch.randn(1, 2, 6, 6)
    net = convert(_ResGroup(), IFNeuron(), example)
    assert len(net.sites) == 4  # a, b, e, c
    attach_fanout(net, example)
    # site a -> conv1 (k3 s1 p1, groups 2: each channel drives 4/2 = 2 output channels; rows
    # read by 2 (border) or 3 outputs) + conv_e (1x1, 4 outputs) + the add (into site c: 0)
    r = torch.tensor([2.0, 3, 3, 3, 3, 2])
    fan_a = 2 * torch.outer(r, r) + 4
    assert torch.equal(net.sites[0].fanout, fan_a.expand(4, 6, 6))
    assert net.sites[0].fanout[0, 0, 0] == 12 and net.sites[0].fanout[0, 2, 3] == 22
    assert torch.equal(net.sites[1].fanout, torch.full((4, 6, 6), 4.0))  # b -> conv2 1x1
    assert torch.equal(net.sites[2].fanout, torch.zeros(4, 6, 6))  # e only feeds the add
    # c -> mean (sum) -> ·2 / 4 (constants, no synapses) -> fc: 3 synapses
    assert torch.equal(net.sites[3].fanout, torch.full((4, 6, 6), 3.0))
    kinds = {la.name: la.kind for la in synaptic_layers(net, example)}
    assert kinds == {"conv0": "dense", "conv1": "event", "conv_e": "event", "conv2": "event",
                     "fc": "event"}  # fmt: skip
    # grouped conv MACs: C_out·HW·(C_in/groups)·k² = 4·36·2·9
    assert {la.name: la.macs for la in synaptic_layers(net, example)}["conv1"] == 4 * 36 * 2 * 9


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(3, 1, 3, 3))
        self.w2 = nn.Parameter(torch.randn(2, 3, 3, 3))
        self.fc = nn.Parameter(torch.randn(5, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(F.conv2d(x, self.w1, None, 1, 1))
        b = F.relu(F.conv2d(F.avg_pool2d(a, 2), self.w2, padding=1))
        return F.linear(torch.flatten(F.adaptive_avg_pool2d(b, 1), 1), self.fc)


def test_functional_layers_are_counted():
    example = torch.randn(1, 1, 4, 4)
    net = convert(_Functional(), IFNeuron(), example)
    attach_fanout(net, example)
    # a [3, 4, 4] -> sum pool 2 -> [3, 2, 2] -> conv k3 p1 (2x2 -> 2x2, every input read by all 4
    # outputs) x 2 channels = 8
    assert torch.equal(net.sites[0].fanout, torch.full((3, 4, 4), 8.0))
    assert torch.equal(net.sites[1].fanout, torch.full((2, 2, 2), 5.0))
    layers = synaptic_layers(net, example)
    assert [la.kind for la in layers] == ["dense", "event", "event"]
    assert [la.macs for la in layers] == [3 * 16 * 9, 2 * 4 * 27, 10]


def test_resnet20_fanout_of_a_site_feeding_a_3x3_conv():
    torch.manual_seed(0)
    example = torch.randn(1, 3, 32, 32)
    net = convert(resnet20(10), IFNeuron(), example)
    before = net(example)
    net.set_mode("spike")
    net.set_steps(3)
    attach_fanout(net, example)
    assert all(s.mode == "spike" for s in net.sites)  # the network is left as it was
    assert all(e.steps == 3 for e in net.expanders)
    net.set_mode("relu")
    net.set_steps(1)
    assert torch.equal(net(example), before)
    assert all(p.grad is None for p in net.parameters())
    # site 1 (after layer1.0.conv1) feeds only layer1.0.conv2: 3x3, s1, p1, 16 channels
    # site 0 (stem) feeds layer1.0.conv1 (same shape) and the identity shortcut -> add -> site
    for index in (0, 1):
        fan = net.sites[index].fanout
        assert fan.shape == (16, 32, 32)
        assert torch.all(fan[:, 1:-1, 1:-1] == 9 * 16)
        assert torch.all(fan[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 4 * 16)
        assert torch.all(fan[:, 0, 1:-1] == 6 * 16)
    assert torch.equal(net.sites[-1].fanout, torch.full((64, 8, 8), 10.0))  # avgpool -> fc(10)
    # stem 3·16·9·32² + layer1 6·16·16·9·32² + layer2 (16·32 + 5·32·32)·9·16² + layer3
    # (32·64 + 5·64·64)·9·8² + fc 64·10
    layers = synaptic_layers(net, example)
    assert sum(la.macs for la in layers) == 40_551_040
    assert [la.name for la in layers if la.kind == "dense"] == ["conv1"]  # the stem: 3·16·9·32²
    assert sum(la.macs for la in layers if la.kind == "dense") == 3 * 16 * 9 * 32 * 32


def test_simulated_sops_equal_spikes_times_fanout():
    torch.manual_seed(0)
    example = torch.randn(1, 2, 6, 6)
    net = convert(_ResGroup(), BurstNeuron(phi=3), example)
    x = torch.randn(3, 2, 6, 6)
    net.set_mode("observe")
    net(x)
    for site in net.sites:  # thresholds well below the max so that bursts happen
        site.theta = torch.cat(site.recorded).amax().reshape(1) / 4
        site.recorded = []
    attach_fanout(net, example)
    outputs: list[list[torch.Tensor]] = [[] for _ in net.sites]
    hooks = [
        s.register_forward_hook(lambda m, i, o, k=k: outputs[k].append(o.detach().double()))
        for k, s in enumerate(net.sites)
    ]
    simulate(net, x, 5, chunk=2)
    for h in hooks:
        h.remove()
    expected = []
    for site, outs in zip(net.sites, outputs, strict=True):
        n = torch.cat(outs) / site.theta.double()  # [T·B, C, H, W] spike counts
        assert n.max() > 1  # some burst of several spikes
        expected.append((n * site.fanout.double()).sum())
    got = sop_totals(net).double().sum((1, 2))
    assert torch.allclose(got, torch.stack(expected), rtol=1e-6)
    assert got[0] > 0 and got[2] == 0
