"""Energy conventions: ``spikes`` (a burst of k spikes costs k ACs per synapse) and ``messages``
(a non-zero burst costs one AC per synapse), hand-computed, and both written by every run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import TensorDataset

from adacal import keys
from adacal.errors import ConfigError
from adacal.lightning import SNNEvaluator
from adacal.metrics.energy import CostModel
from adacal.reporting import run_metrics as rm
from adacal.reporting.table import results_markdown, results_rows
from adacal.snn.convert import convert
from adacal.snn.early_exit import simulate_early_exit
from adacal.snn.neurons import BurstNeuron, IFNeuron
from adacal.snn.simulate import message_totals, simulate, sop_totals, spike_totals
from adacal.validate import burst, check_values


def _burst_of_three() -> nn.Sequential:
    """[1, 4] -> linear(4 -> 2) -> ReLU (the site, 2 neurons) -> linear(2 -> 3).

    Identity first layer (neuron i reads input i), so an input of 3.0 makes neuron 0 emit a
    burst of 3 every step (θ = 1, φ = 3) and 1.0 makes neuron 1 emit one spike."""
    model = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        model[0].bias.zero_()
        model[2].weight.fill_(0.5)
        model[2].bias.zero_()
    return model


def test_a_burst_of_three_is_three_acs_per_synapse_with_spikes_and_one_with_messages():
    example = torch.zeros(1, 4)
    net = convert(_burst_of_three(), BurstNeuron(phi=3), example)
    net.sites[0].theta = torch.tensor([1.0])
    cost = CostModel.of(net, example)
    # linear(4 -> 2) reads the input (dense, 8 MACs); linear(2 -> 3) reads the site (event,
    # 6 MACs): each site neuron drives 3 synapses
    assert [(la.kind, la.macs) for la in cost.layers] == [("dense", 8.0), ("event", 6.0)]
    cost.attach(net)
    assert net.sites[0].fanout.tolist() == [3.0, 3.0]

    # v(0) = θ/2 = 0.5. Neuron 0, input 3: v = 3.5 -> n = 3 (φ), v = 0.5; every step.
    # Neuron 1, input 1: v = 1.5 -> n = 1, v = 0.5; every step.
    x = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    T = 2
    simulate(net, x, T, chunk=1)
    assert spike_totals(net)[0, :, 0].tolist() == [4.0, 4.0]
    # spikes: (3 + 1)·3 = 12 ACs per step; messages: (1 + 1)·3 = 6 ACs per step
    assert sop_totals(net)[0, :, 0].tolist() == [12.0, 12.0]
    assert message_totals(net)[0, :, 0].tolist() == [6.0, 6.0]

    res = {"sops": 24.0, "site_sops": [24.0], "messages": 12.0, "site_messages": [12.0]}
    out = rm.energy_metrics(cost, net.sites, res, T, keys.TEST)
    dense = 8.0 * T  # the first layer's MACs every step
    ann_pj = 4.6 * 14.0
    spikes_pj = 4.6 * dense + 0.9 * 24  # 73.6 + 21.6 = 95.2
    messages_pj = 4.6 * dense + 0.9 * 12  # 73.6 + 10.8 = 84.4
    assert out == pytest.approx(
        {
            "snn/test/sops_T2": 24 + dense,
            "snn/test/acs_T2": 24.0,
            "snn/test/energy_uj_T2": spikes_pj / 1e6,
            "snn/test/saving_vs_ann_T2": 1 - spikes_pj / ann_pj,
            "snn/test/mean_timesteps_T2": 2.0,
            "snn/test/sops_messages_T2": 12 + dense,
            "snn/test/acs_messages_T2": 12.0,
            "snn/test/energy_messages_uj_T2": messages_pj / 1e6,
            "snn/test/saving_vs_ann_messages_T2": 1 - messages_pj / ann_pj,
            "snn/test/site0_acs_T2": 24.0,
            "snn/test/site0_acs_messages_T2": 12.0,
        }
    )
    assert out["snn/test/energy_uj_T2"] == pytest.approx(95.2e-6)
    assert out["snn/test/energy_messages_uj_T2"] == pytest.approx(84.4e-6)


def test_if_messages_are_the_sops_tensor_itself():
    """φ = 1: n ∈ {0, 1}, so 1[n > 0]·f = n·f; the site appends the same tensor, no extra work."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU()
    )
    model.append(nn.Flatten()).append(nn.Linear(4 * 3 * 3, 5))
    example = torch.randn(1, 1, 8, 8)
    net = convert(model, IFNeuron(), example)
    for site in net.sites:
        site.theta = torch.tensor([0.2])
    CostModel.of(net, example).attach(net)
    simulate(net, torch.randn(6, 1, 8, 8), 5, chunk=2)
    for site in net.sites:
        assert all(m is s for m, s in zip(site.message_counts, site.sop_counts, strict=True))
    assert torch.equal(message_totals(net), sop_totals(net))
    assert float(sop_totals(net).sum()) > 0  # the sites fired
    net.reset(1)
    assert all(site.message_counts == [] for site in net.sites)


def _small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


def _network(neuron, example: torch.Tensor) -> tuple:
    torch.manual_seed(1)
    net = convert(_small_cnn(), neuron, example)
    for site in net.sites:
        site.theta = torch.tensor([0.05])  # low thresholds: bursts of several spikes
    cost = CostModel.of(net, example)
    cost.attach(net)
    return net, cost


def _evaluate(net, dataset, T: int, eta=None) -> dict:
    evaluator = SNNEvaluator(net, dataset, T=T, batch_size=5, exit_thresholds=eta)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.test(evaluator, verbose=False)
    return evaluator.results


def test_a_simulated_run_writes_both_conventions_and_spikes_cost_at_least_messages():
    torch.manual_seed(0)
    x, y = torch.randn(12, 1, 6, 6), torch.randint(0, 3, (12,))
    data, example, T = TensorDataset(x, y), x[:1], 4
    net, cost = _network(BurstNeuron(phi=4), example)
    res = _evaluate(net, data, T)
    assert res["messages"] < res["sops"]  # some bursts of more than one spike
    assert len(res["site_messages"]) == len(net.sites)
    assert sum(res["site_messages"]) == pytest.approx(res["messages"])
    # the same counts by hand: one simulation of the whole set
    simulate(net, x, T)
    assert res["messages"] == pytest.approx(float(message_totals(net).double().sum()) / 12)
    assert res["sops"] == pytest.approx(float(sop_totals(net).double().sum()) / 12)

    base_net, _ = _network(IFNeuron(), example)
    base = _evaluate(base_net, data, T)
    assert base["messages"] == base["sops"]  # IF: one convention

    metrics = rm.energy_metrics(cost, net.sites, res, T, keys.TEST)
    metrics |= rm.baseline_energy_metrics(cost, base_net.sites, base, T)
    metrics |= rm.saving_metrics(metrics, T)
    for prefix in (keys.TEST, keys.BASELINE):
        for name in ("sops", "acs", "energy_uj", "saving_vs_ann"):
            spikes = metrics[keys.key(prefix, name, T)]
            messages = metrics[keys.key(prefix, keys.burst_name(name, keys.MESSAGES), T)]
            if name.startswith("saving"):
                assert spikes <= messages  # the cheaper convention saves more
            else:
                assert spikes >= messages
    for burst_ in keys.BURSTS:
        name = keys.burst_name("energy_uj", burst_)
        own, ref = metrics[keys.key(keys.TEST, name, T)], metrics[keys.key(keys.BASELINE, name, T)]
        saving = metrics[keys.key(keys.TEST, keys.burst_name("saving_vs_baseline", burst_), T)]
        assert saving == pytest.approx(1 - own / ref)
    # the IF baseline costs the same in both conventions
    assert metrics["snn/baseline/energy_uj_T4"] == metrics["snn/baseline/energy_messages_uj_T4"]
    # every key parses and round-trips (adacal.keys is the one builder)
    assert all(keys.parse(k).text() == k for k in metrics)

    # IAT: the early-exit path carries the messages of the simulated steps only
    eta = torch.full((T,), -1.0)  # c_1 > -1: every sample exits after step 1
    exits = _evaluate(net, data, T, eta)
    assert exits["mean_timesteps"] == 1.0
    one = simulate_early_exit(net, x, T, eta)
    assert one.site_messages is not None
    assert exits["messages"] == pytest.approx(float(one.site_messages.sum()) / 12)
    assert exits["messages"] <= exits["sops"] and exits["messages"] < res["messages"]


def test_results_table_shows_the_headline_convention():
    metrics = {
        "ann/test/acc": 0.9,
        "snn/test/acc_T4": 0.8,
        "snn/test/sops_T4": 2000.0,
        "snn/test/energy_uj_T4": 3.0,
        "snn/test/saving_vs_baseline_T4": 0.25,
        "snn/test/sops_messages_T4": 1000.0,
        "snn/test/energy_messages_uj_T4": 2.0,
        "snn/test/saving_vs_baseline_messages_T4": 0.5,
    }
    spikes = results_rows(metrics)[0]
    messages = results_rows(metrics, burst=keys.MESSAGES)[0]
    assert (spikes[6], spikes[7], spikes[8]) == ("2,000", "3.00", "+25.0%")
    assert (messages[6], messages[7], messages[8]) == ("1,000", "2.00", "+50.0%")
    assert spikes[:6] == messages[:6]
    head = results_markdown(metrics, burst=keys.MESSAGES).splitlines()[0]
    assert "SOPs/image (messages)" in head and "energy (µJ, messages)" in head
    assert "messages" not in results_markdown(metrics).splitlines()[0]  # default: spikes


def test_energy_burst_is_validated_naming_the_key():
    assert burst("spikes") == "spikes" and burst("messages") == "messages"
    for bad in ("events", "", None, 3):
        with pytest.raises(ConfigError) as err:
            burst(bad)
        assert err.value.key == "energy.burst" and "spikes" in str(err.value)
    cfg = OmegaConf.create({"seed": 0, "stages": ["ann"], "ann": {"checkpoint": "x"}})
    check_values(cfg)  # a config without the key (older records) passes
    cfg.energy = {"burst": "message"}
    with pytest.raises(ConfigError, match=r"^energy\.burst: 'message'"):
        check_values(cfg)


def test_default_config_headline_is_spikes(repo_root):
    cfg = OmegaConf.load(repo_root / "conf" / "config.yaml")
    assert cfg.energy.burst == keys.SPIKES
    assert keys.BURSTS == ("spikes", "messages")


def test_burst_names():
    assert keys.burst_name("energy_uj", keys.SPIKES) == "energy_uj"
    assert keys.burst_name("energy_uj", keys.MESSAGES) == "energy_messages_uj"
    assert keys.burst_name("sops", keys.MESSAGES) == "sops_messages"
    assert keys.burst_name("saving_vs_baseline", keys.MESSAGES) == "saving_vs_baseline_messages"
    with pytest.raises(ValueError, match="unknown energy convention"):
        keys.burst_name("sops", "bits")


def test_records_without_messages_get_them_only_where_if_makes_them_exact():
    from adacal.reporting.records import if_messages

    old = {  # an IF record and its baseline written before the messages convention
        "snn/test/energy_uj_T8": 49.0,
        "snn/test/sops_T8": 3.9e7,
        "snn/test/site2_acs_T8": 1.5e6,
        "snn/test/acc_T8": 0.7,
        "snn/baseline/energy_uj_T8": 49.0,
    }
    plain_if = {"neuron": {"_target_": "adacal.snn.neurons.IFNeuron"}, "compression": {}}
    got = if_messages(old, plain_if)
    assert got["snn/test/energy_messages_uj_T8"] == 49.0
    assert got["snn/test/sops_messages_T8"] == 3.9e7
    assert got["snn/test/site2_acs_messages_T8"] == 1.5e6
    assert got["snn/baseline/energy_messages_uj_T8"] == 49.0
    assert "snn/test/acc_messages_T8" not in got
    burst = {"neuron": {"_target_": "adacal.snn.neurons.BurstNeuron"}}
    got = if_messages(old, burst)  # a burst of k is not one message: only the IF baseline
    assert "snn/test/energy_messages_uj_T8" not in got
    assert got["snn/baseline/energy_messages_uj_T8"] == 49.0
    kept = if_messages({**old, "snn/test/energy_messages_uj_T8": 1.0}, plain_if)
    assert kept["snn/test/energy_messages_uj_T8"] == 1.0  # a measured value is never replaced
