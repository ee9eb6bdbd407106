"""Burst (AdaFire) neuron: the equation, φ = 1 is IF bitwise, φ-aware thresholds."""

from __future__ import annotations

import pytest
import torch

from adacal.calibration.thresholds import fit_threshold
from adacal.errors import ConfigError
from adacal.snn.neurons import (
    AdaFireNeuron,
    BurstNeuron,
    IFNeuron,
    burst_step,
    burst_step_,
    if_step,
    surrogate_floor,
)
from adacal.snn.site import Site


def _site(neuron, theta, T: int, phi: int | None = None) -> Site:
    site = Site(neuron, 0)
    site.theta = torch.as_tensor(theta, dtype=torch.float32).reshape(-1)
    site.T, site.mode = T, "spike"
    if phi is not None:
        site.phi = phi
    return site


def _run(site: Site, z: torch.Tensor, chunk: int) -> torch.Tensor:
    T, B = z.shape[:2]
    site.reset(B)
    outs = [site(z[s : s + chunk].reshape(-1, *z.shape[2:])) for s in range(0, T, chunk)]
    return torch.cat(outs).reshape(z.shape)


@pytest.mark.parametrize("compiled", [False])
def test_phi_one_is_the_if_neuron_bitwise(compiled):
    torch.manual_seed(0)
    z = torch.randn(17, 4, 3, 6, 6) * 2
    theta = torch.rand(3) + 0.3
    if_out = _run(_site(IFNeuron(), theta, 17), z, chunk=5)
    burst = _site(BurstNeuron(phi=1), theta, 17)
    assert torch.equal(_run(burst, z, chunk=5), if_out)
    # the step functions too, including values that sit exactly on the threshold
    # the step functions too, on values packed around the threshold (the float boundary
    # fl(v/θ) ≥ 1 ⟺ v ≥ θ), including the float just below θ and θ itself
    for _ in range(50):
        th = torch.rand(()) * 10 + 1e-3
        v = th * (1 + (torch.rand(20000) - 0.5) * 1e-5)
        below = torch.nextafter(th, torch.tensor(0.0))
        v = torch.cat([v, below.expand(3), th.expand(3), torch.tensor([0.0, -0.2])])
        x = torch.zeros_like(v)
        for a, b in zip(if_step(v, x, th), burst_step(v, x, th, 1), strict=True):
            assert torch.equal(a, b)


def test_burst_site_equals_a_direct_loop_over_the_equation():
    torch.manual_seed(1)
    T, phi = 11, 4
    theta = torch.tensor([0.5, 0.9])
    z = torch.randn(T, 3, 2, 5) * 1.5
    got = _run(_site(BurstNeuron(phi=phi), theta, T), z, chunk=4)
    th = theta.reshape(1, 2, 1)
    v = torch.zeros_like(z[0]) + th / 2
    spikes = 0
    for t in range(T):
        v = v + z[t]
        n = torch.clamp(torch.floor(v / th), 0, phi)
        assert torch.equal(got[t], n * th)
        v = v - n * th
        spikes += n.sum()
    assert (got.reshape(T, 3, 2, 5) / th > 1.5).any()  # some bursts of several spikes happened
    site = _site(BurstNeuron(phi=phi), theta, T)
    _run(site, z, chunk=T)
    assert torch.cat(site.spike_counts).sum().item() == pytest.approx(float(spikes), rel=1e-5)


def test_in_place_burst_step_matches_the_pure_one():
    torch.manual_seed(2)
    v, x, th = torch.randn(1000) * 3, torch.randn(1000), torch.tensor(0.37)
    out_ref, v_ref = burst_step(v, x, th, 5)
    v2, out = v.clone(), torch.empty(1000)
    burst_step_(v2, x, th, out, 5)
    assert torch.equal(out, out_ref) and torch.equal(v2, v_ref)
    n = out_ref / th
    assert n.max() <= 5 and n.min() >= 0
    assert torch.all((v_ref < th) | (n == 5))  # below θ after firing, unless capped at φ
    assert torch.all((v_ref >= 0) | (n == 0))  # never fires more than the potential holds


def test_burst_constant_input_is_the_phi_T_level_surrogate():
    """Rate of a burst neuron under constant input = clip-round with φ·T levels over [0, φθ]."""
    T, phi = 4, 3
    theta = torch.tensor([0.5])
    z = torch.linspace(-0.3, 2.0, 231).reshape(1, -1)
    rate = _run(_site(BurstNeuron(phi=phi), theta, T), z.expand(T, 1, -1).clone(), T).mean(0)
    expected = surrogate_floor(z, theta, T, theta / 2, T * phi)
    assert torch.allclose(rate, expected, atol=1e-6)
    assert rate.max().item() == pytest.approx(phi * 0.5)


def test_thresholds_are_fitted_for_the_ceiling_phi_theta():
    torch.manual_seed(3)
    z = torch.rand(2000) * 4.0
    for phi in (1, 2, 8):
        assert fit_threshold(z, "max", 4, phi=phi).item() == pytest.approx(z.max().item() / phi)
    # MSE: the grid runs over φθ, so θ·φ lands on the same grid as the IF fit
    t8 = fit_threshold(z, "mse", 4, levels=32, phi=8).item()
    grid = [z.max().item() * (1 - 0.01 * i) for i in range(95)]
    assert min(abs(8 * t8 - g) for g in grid) < 1e-5

    # more levels cannot fit worse than φ = 1 at the same T
    def err(theta, phi):
        th = torch.tensor([theta])
        return (surrogate_floor(z, th, 4, th / 2, 4 * phi) - z).pow(2).sum()

    assert err(t8, 8) < err(fit_threshold(z, "mse", 4).item(), 1)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"phi_min": 5, "phi_init": 4, "phi_target": 4}, "neuron.phi_min"),
        ({"phi_min": 0}, "neuron.phi_min"),
        ({"phi_target": 9}, "neuron.phi_target"),
        ({"rho": 0.0}, "neuron.rho"),
        ({"rho": -1.0}, "neuron.rho"),
        ({"cost": "energy"}, "neuron.cost"),
    ],
)
def test_bad_adafire_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as info:
        AdaFireNeuron(**kwargs)
    assert info.value.key == key


def test_bad_burst_phi():
    with pytest.raises(ConfigError) as info:
        BurstNeuron(phi=0)
    assert info.value.key == "neuron.phi"
