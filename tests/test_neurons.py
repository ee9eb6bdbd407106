"""IF neuron: step function, site module, surrogate and state handling against the equations."""

from __future__ import annotations

import torch

from adacal.snn.neurons import IFNeuron, if_step, surrogate_floor
from adacal.snn.site import Site


def _site(theta, T: int, offset: str = "initial") -> Site:
    site = Site(IFNeuron(offset=offset), 0)
    site.theta = torch.as_tensor(theta, dtype=torch.float32).reshape(-1)
    site.T = T
    site.mode = "spike"
    return site


def _run(site: Site, z_seq: torch.Tensor, chunk: int) -> torch.Tensor:
    """Feed z_seq [T, B, ...] in chunks of timesteps; returns outputs [T, B, ...]."""
    T, B = z_seq.shape[:2]
    site.reset(B)
    outs = [site(z_seq[s : s + chunk].reshape(-1, *z_seq.shape[2:])) for s in range(0, T, chunk)]
    return torch.cat(outs).reshape(z_seq.shape)


def test_module_equals_direct_loop_over_the_equation():
    torch.manual_seed(0)
    T, theta = 13, 0.7
    z = torch.randn(T, 3, 4, 5, 5)
    site = _site(theta, T)
    got = _run(site, z, chunk=4)
    v = torch.full_like(z[0], theta / 2)
    for t in range(T):
        v = v + z[t]
        expected = (v >= theta).float() * theta
        v = v - expected
        assert torch.equal(got[t], expected)
    out, v_new = if_step(torch.zeros(2), torch.tensor([0.5, 1.5]), torch.tensor(1.0))
    assert out.tolist() == [0.0, 1.0] and v_new.tolist() == [0.5, 0.5]


def test_constant_input_gives_clip_round():
    T = 16
    theta = torch.tensor([1.3])
    z = torch.linspace(-0.5, 2.0, 301).reshape(1, -1)
    site = _site(theta, T)
    rate = _run(site, z.expand(T, 1, -1).clone(), chunk=5).mean(0)
    expected = theta / T * torch.clamp(torch.floor(T * z / theta + 0.5), 0, T)
    assert torch.allclose(rate, expected, atol=1e-6)
    surrogate = surrogate_floor(z, theta, T, theta / 2, T)
    assert torch.allclose(surrogate, expected, atol=1e-6)


def test_every_prefix_is_an_exact_run_with_initial_offset():
    T, theta = 32, torch.tensor([1.0])
    z = torch.rand(1, 50)
    out = _run(_site(theta, T), z.expand(T, 1, -1).clone(), chunk=7)
    for t in (1, 3, 8, 17, 32):
        rate = out[:t].mean(0)
        assert torch.allclose(
            rate, theta / t * torch.clamp(torch.floor(t * z / theta + 0.5), 0, t), atol=1e-6
        )


def test_shift_offset_matches_initial_after_T_steps():
    T = 8
    z = torch.rand(T, 2, 30) * 1.2
    a = _run(_site(1.0, T, "initial"), z, chunk=3).sum(0)
    b = _run(_site(1.0, T, "shift"), z, chunk=3).sum(0)
    const = torch.rand(2, 30)
    ca = _run(_site(1.0, T, "initial"), const.expand(T, 2, 30).clone(), 8).sum(0)
    cb = _run(_site(1.0, T, "shift"), const.expand(T, 2, 30).clone(), 8).sum(0)
    assert torch.allclose(ca, cb)  # constant input: identical spike counts over T
    assert (a - b).abs().max() <= 1.0 + 1e-6  # any input: they differ by at most one spike


def test_per_channel_thresholds_broadcast():
    T = 4
    theta = torch.tensor([0.5, 1.0, 2.0])
    z = torch.full((T, 2, 3, 2, 2), 1.0)
    rate = _run(_site(theta, T), z, chunk=4).mean(0)
    for c, th in enumerate(theta.tolist()):
        expected = th / T * min(max(int(T * 1.0 / th + 0.5), 0), T)
        assert torch.allclose(rate[:, c], torch.full_like(rate[:, c], expected))


def test_state_resets_between_batches_and_counts_spikes():
    T = 6
    site = _site(1.0, T)
    z = torch.rand(T, 4, 10)
    first = _run(site, z, chunk=6)
    counts_first = torch.cat(site.spike_counts)
    second = _run(site, z, chunk=2)
    assert torch.equal(first, second)  # no membrane potential leaks into the next batch
    assert torch.equal(counts_first, torch.cat(site.spike_counts))
    assert torch.equal(counts_first, (first > 0).float().sum(-1))  # [T, B] spikes per sample


def test_in_place_step_equals_the_pure_step_bitwise():
    torch.manual_seed(1)
    theta = torch.tensor([0.3, 0.9, 1.7]).view(1, 3, 1)
    v = torch.randn(5, 3, 7)
    v_in_place = v.clone()
    out = torch.empty_like(v)
    for _ in range(10):
        x = torch.randn(5, 3, 7)
        expected, v = if_step(v, x, theta)
        IFNeuron().step_(v_in_place, x, theta, out)
        assert torch.equal(out, expected) and torch.equal(v_in_place, v)


def test_compiled_chunk_equals_the_eager_loop():
    torch.manual_seed(2)
    T = 6
    z = torch.randn(T, 2, 3, 4, 4)
    eager = _site(torch.tensor([0.5, 1.0, 1.5]), T)
    compiled = _site(torch.tensor([0.5, 1.0, 1.5]), T)
    compiled.compiled = True
    assert torch.equal(_run(eager, z, chunk=4), _run(compiled, z, chunk=4))
    assert torch.equal(torch.cat(eager.spike_counts), torch.cat(compiled.spike_counts))
