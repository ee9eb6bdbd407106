"""The fused neuron loop (adacal.snn.fused): bitwise the pure step functions, exact fallback,
``snn.compile`` validation."""

from __future__ import annotations

import logging

import pytest
import torch

from adacal.errors import ConfigError
from adacal.snn import fused
from adacal.snn.neurons import BurstNeuron, IFNeuron, burst_step, if_step
from adacal.snn.site import Site
from adacal.stages.snn import SNNParts

T, CHUNK = 8, 3  # chunks of 3, 3, 2 steps: the state crosses chunk boundaries, two kernel sizes


@pytest.fixture(autouse=True)
def _fresh_state():
    fused.reset()
    yield
    fused.reset()


def _site(neuron: IFNeuron, theta: torch.Tensor, phi: int, compiled: str) -> Site:
    site = Site(neuron, 0)
    site.theta = theta.reshape(-1)
    site.bias = torch.tensor([0.05, -0.1, 0.0, 0.2])
    site.T, site.mode, site.phi, site.compiled = T, "spike", phi, compiled
    return site


def _run(site: Site, z: torch.Tensor) -> torch.Tensor:
    """Feed z [T, B, ...] in chunks of CHUNK steps; returns the outputs [T, B, ...]."""
    site.reset(z.shape[1])
    outs = [site(z[s : s + CHUNK].reshape(-1, *z.shape[2:])) for s in range(0, T, CHUNK)]
    return torch.cat(outs).reshape(z.shape)


def _reference(z: torch.Tensor, theta: torch.Tensor, bias: torch.Tensor, phi: int, offset: str):
    """The pure step functions over all T steps at once: outputs [T, B, C, H, W]."""
    th, b = theta.reshape(1, -1, 1, 1), bias.reshape(1, -1, 1, 1)
    v = torch.zeros_like(z[0]) + (th / 2 if offset == "initial" else 0.0)
    outs = []
    for t in range(T):
        x = z[t] + b
        if offset == "shift":
            x = x + th / (2 * T)
        out, v = if_step(v, x, th) if phi == 1 else burst_step(v, x, th, phi)
        outs.append(out)
    return torch.stack(outs)


@pytest.mark.parametrize("offset", ["initial", "shift"])
def test_fused_loop_is_bitwise_the_pure_step_functions(offset):
    """IF and burst, φ per site 1…8, per-channel and scalar θ, state across chunks of 3, 3, 2."""
    torch.manual_seed(0)
    z = torch.randn(T, 3, 4, 5, 5) * 1.5
    for phi in range(1, 9):
        neuron = IFNeuron(offset=offset) if phi == 1 else BurstNeuron(phi=8, offset=offset)
        for theta in (torch.tensor([0.3, 0.7, 1.1, 0.5]), torch.tensor([0.45])):
            site = _site(neuron, theta, phi, "true")
            eager = _site(neuron, theta, phi, "false")
            expected = _reference(z, theta.expand(4), site.bias, phi, offset)
            assert torch.equal(_run(site, z), expected), (phi, theta)
            assert torch.equal(_run(eager, z), expected), (phi, theta)
            assert torch.equal(site.v, eager.v)  # the state after T steps
            assert torch.equal(torch.cat(site.spike_counts), torch.cat(eager.spike_counts))
            assert site.v.dtype == z.dtype
    assert fused.kernels_compiled() >= 1 and fused.compile_seconds() > 0


def _failing_compile():
    def fail(*args, **kwargs):
        raise RuntimeError("no C++ compiler (simulated)")

    return fail


def test_auto_falls_back_to_the_eager_loop_once(monkeypatch, caplog):
    monkeypatch.setattr(fused, "_compiled", _failing_compile)
    monkeypatch.setattr(fused, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(fused, "RENT_SECONDS", 0.0)  # compile at the first chunk
    torch.manual_seed(1)
    z = torch.randn(T, 2, 4, 3, 3)
    theta = torch.tensor([0.3, 0.7, 1.1, 0.5])
    eager = _run(_site(BurstNeuron(phi=4), theta, 3, "false"), z)
    with caplog.at_level(logging.WARNING, logger="adacal"):
        auto = _site(BurstNeuron(phi=4), theta, 3, "auto")
        assert torch.equal(_run(auto, z), eager)
        assert torch.equal(_run(auto, z), eager)  # again: no second attempt, no second line
    warnings = [r for r in caplog.records if "snn.compile=auto" in r.getMessage()]
    assert len(warnings) == 1 and not fused.available()
    required = _site(BurstNeuron(phi=4), theta, 3, "true")
    with pytest.raises(RuntimeError, match="simulated"):  # true: the failure is an error
        _run(required, z)


def test_auto_runs_small_chunks_in_the_eager_loop(monkeypatch):
    monkeypatch.setattr(fused, "_compiled", _failing_compile)  # would fail if it were called
    site = _site(IFNeuron(), torch.tensor([0.5]), 1, "auto")
    _run(site, torch.randn(T, 2, 4, 3, 3))
    assert fused.available() and fused.kernels_compiled() == 0


def test_auto_rents_the_eager_loop_until_it_has_cost_a_compilation(monkeypatch):
    """Ski rental: under auto a kernel key runs eagerly until its eager chunks have cost
    RENT_SECONDS, then it is compiled; the numbers are the same bits either way."""
    calls = []

    def counting():
        def compiled(*args):
            calls.append(args[0].shape[0])
            return fused.chunk(*args)

        return compiled

    monkeypatch.setattr(fused, "_compiled", counting)
    monkeypatch.setattr(fused, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(fused, "RENT_SECONDS", 3600.0)
    z = torch.randn(T, 2, 4, 3, 3)
    theta = torch.tensor([0.3, 0.7, 1.1, 0.5])
    eager = _run(_site(BurstNeuron(phi=4), theta, 3, "false"), z)
    site = _site(BurstNeuron(phi=4), theta, 3, "auto")
    assert torch.equal(_run(site, z), eager)
    assert calls == [] and fused.kernels_compiled() == 0  # renting: chunks of 3, 3, 2
    rent = dict(fused._rent)
    assert len(rent) == 2 and all(seconds > 0 for seconds in rent.values())  # Tc = 3 and 2
    monkeypatch.setattr(fused, "RENT_SECONDS", min(rent.values()) / 2)  # both paid for now
    assert torch.equal(_run(site, z), eager)
    assert calls == [3, 3, 2] and fused.kernels_compiled() == 2
    assert fused._rent == rent  # compiled kernels pay no more rent


def test_eager_state_keeps_the_activations_dtype():
    z = torch.randn(T, 2, 4, 3, 3, dtype=torch.bfloat16)
    site = _site(BurstNeuron(phi=4), torch.tensor([0.3, 0.7, 1.1, 0.5]), 4, "false")
    out = _run(site, z)
    assert out.dtype == torch.bfloat16 and site.v.dtype == torch.bfloat16


@pytest.mark.parametrize("value", ["sometimes", 2, None, "yes"])
def test_bad_compile_value_names_the_key(value):
    with pytest.raises(ConfigError, match=r"^snn\.compile: ") as err:
        fused.compile_mode(value)
    assert err.value.key == "snn.compile"
    with pytest.raises(ConfigError, match=r"^snn\.compile: "):
        SNNParts(None, None, None, None, (), None, compiled=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "mode"), [("auto", "auto"), ("TRUE", "true"), (True, "true"), (False, "false")]
)
def test_compile_values(value, mode):
    assert fused.compile_mode(value) == mode
    assert SNNParts(None, None, None, None, (), None, compiled=value).compiled == mode  # type: ignore[arg-type]
