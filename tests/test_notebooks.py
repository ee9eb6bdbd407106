"""The analysis notebooks, executed headless on small run records made here, and the
conversion-error maths they use (:mod:`adacal.analysis`) against closed-form expectations.

The notebooks are executed with nbclient (kernel ``python3``, cwd the repository root, inputs
through the ``ADACAL_*`` environment variables their first cell reads); the tests parse the
JSON line the last cell prints.
"""

from __future__ import annotations

import json
import math

import nbformat
import pytest
import torch
from torch import nn

from adacal.analysis import (
    ErrorTotals,
    constant_input_rate,
    conversion_errors,
    fitted_network,
    mean_squared_error,
    neuron_spec,
    relative_l2,
)
from adacal.calibration.recipe import ThresholdSpec
from adacal.snn.convert import convert
from adacal.snn.simulate import rates_and_output

NOTEBOOKS = ("conversion_error.ipynb", "explore_sweep.ipynb")
CELL_TIMEOUT_S = 300


# --- adacal.analysis ---------------------------------------------------------------------------
def test_relative_l2_and_mse_by_hand():
    approx = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    reference = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    # errors (0, 2, 2, 0): Σ e² = 8, Σ a² = 1, 4 elements
    assert relative_l2(approx, reference) == pytest.approx(math.sqrt(8.0))
    assert mean_squared_error(approx, reference) == pytest.approx(2.0)
    assert relative_l2(reference, reference) == 0.0
    assert relative_l2(torch.zeros(3), torch.zeros(3)) == 0.0
    assert relative_l2(torch.ones(3), torch.zeros(3)) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        relative_l2(torch.zeros(2, 3), torch.zeros(3, 2))


def test_error_totals_over_batches_equal_the_whole_set():
    gen = torch.Generator().manual_seed(0)
    approx, reference = torch.randn(10, 3, 4, generator=gen), torch.randn(10, 3, 4, generator=gen)
    totals = ErrorTotals()
    for a, r in zip(approx.split(3), reference.split(3), strict=True):
        totals.add(a, r)
    assert totals.count == approx.numel()
    assert totals.relative_l2 == pytest.approx(relative_l2(approx, reference), rel=1e-12)
    assert totals.mse == pytest.approx(float((approx - reference).pow(2).mean()), rel=1e-6)


def _two_layer(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor):
    """x -> relu(W1 x + b1) -> W2 · + b2: one neuron site fed by the analog first layer."""
    model = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0]), nn.ReLU(), nn.Linear(*w2.T.shape))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[0].bias.copy_(b1)
        model[2].weight.copy_(w2)
        model[2].bias.copy_(b2)
    return model.eval()


@pytest.mark.parametrize(("phi", "T"), [(1, 3), (1, 8), (2, 5), (4, 4)])
def test_single_site_errors_match_the_closed_form(phi, T):
    """A site fed a constant current z emits floor((T·z + θ/2)/θ) spikes over T steps, clipped
    to [0, φ·T] (reset by subtraction, v(0) = θ/2): its rate, its error against relu(z) and the
    output error through the last linear layer follow by hand (float64 here)."""
    gen = torch.Generator().manual_seed(phi * 100 + T)
    x = torch.randn(48, 5, generator=gen)
    w1, b1 = torch.randn(7, 5, generator=gen) * 0.6, torch.randn(7, generator=gen) * 0.3
    w2, b2 = torch.randn(3, 7, generator=gen), torch.randn(3, generator=gen)
    theta = 0.45
    net = convert(_two_layer(w1, b1, w2, b2), neuron_spec(phi), x[:1])
    (site,) = net.sites
    site.theta = torch.tensor([theta])
    net.set_T(T)

    z = x.double() @ w1.double().T + b1.double()  # [48, 7]
    count = torch.floor((T * z + theta / 2) / theta)
    distance = (count - (T * z + theta / 2) / theta).abs()
    assert float(distance.min()) > 1e-4  # no input sits on a spike boundary (float32 vs 64)
    assert float((z > phi * theta).double().mean()) > 0.05  # some neurons saturate at φ
    assert float((z < 0).double().mean()) > 0.05  # and some stay silent
    rate = count.clamp(0, phi * T) * theta / T
    ann = z.clamp_min(0)
    out_snn = rate @ w2.double().T + b2.double()
    out_ann = ann @ w2.double().T + b2.double()

    rates, mean_out = rates_and_output(net, x, T, chunk=2)
    torch.testing.assert_close(rates[0].double(), rate, atol=1e-5, rtol=0)
    torch.testing.assert_close(mean_out.double(), out_snn, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(
        constant_input_rate(z, theta, T, phi), rate, atol=1e-12, rtol=0
    )  # the library's closed form is the same equation

    errors = conversion_errors(net, x, T, batch_size=20, chunk=3)
    expected_site = float((rate - ann).norm() / ann.norm())
    expected_out = float((out_snn - out_ann).norm() / out_ann.norm())
    assert errors.sites[0].relative_l2 == pytest.approx(expected_site, rel=1e-5)
    assert errors.sites[0].mse == pytest.approx(float((rate - ann).pow(2).mean()), rel=1e-5)
    assert errors.output.relative_l2 == pytest.approx(expected_out, rel=1e-4)
    agree = float((out_snn.argmax(1) == out_ann.argmax(1)).double().mean())
    assert errors.agreement == pytest.approx(agree)
    # reset by subtraction never lets the rate stray more than θ/(2T) from an input in range
    inside = (z >= 0) & (z <= phi * theta)
    assert float((rate - ann)[inside].abs().max()) <= theta / (2 * T) + 1e-12


@pytest.mark.parametrize("phi", [1, 2, 4])
def test_uniform_inputs_give_the_quantisation_mse_after_threshold_fitting(phi):
    """Inputs spread uniformly over [0, m] with max thresholds (θ = m/φ, the recipe's
    ``max`` fit): the rate is z rounded to a grid of step Δ = m/(φ·T), so the site's MSE is
    Δ²/12 — burst φ divides the IF error by φ² at the same T."""
    M, T = 4000, 4
    levels = (torch.arange(M, dtype=torch.float32) + 0.5) / M  # z_j: uniform over (0, 1)
    model = _two_layer(
        torch.zeros(M, 1), levels, torch.randn(2, M, generator=torch.Generator().manual_seed(1)),
        torch.zeros(2),
    )  # fmt: skip
    x = torch.ones(2, 1)  # the site's input is z = levels whatever the image
    net = fitted_network(model, neuron_spec(phi), x, T, ThresholdSpec(method="max"))
    m = float(levels.max())
    assert float(net.sites[0].theta) == pytest.approx(m / phi, rel=1e-6)
    assert net.sites[0].phi == phi
    errors = conversion_errors(net, x, T)
    delta = m / (phi * T)
    assert errors.sites[0].mse == pytest.approx(delta**2 / 12, rel=0.01)


# --- the notebooks -----------------------------------------------------------------------------
def test_notebooks_are_committed_clean(repo_root):
    for name in NOTEBOOKS:
        nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), name
        assert all(not c.outputs and c.execution_count is None for c in code), (
            f"{name} is committed with outputs; clear them before saving"
        )
        assert nb.metadata["kernelspec"]["name"] == "python3"


def _execute(repo_root, name: str) -> tuple[dict, nbformat.NotebookNode]:
    """Run notebooks/<name> in memory (cwd: the repository); returns its summary and itself.

    The kernel inherits ``os.environ`` (set the ``ADACAL_*`` inputs with monkeypatch first).
    """
    from nbclient import NotebookClient

    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(repo_root)}},
    ).execute()
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    return json.loads(text.strip().splitlines()[-1]), nb


def _images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


@pytest.fixture(scope="module")
def sweep(compose_config, tiny_overrides, tmp_path_factory):
    """A sweep-like folder of digits runs (seconds each):

    - ``0/``: IF, trains its ANN (``ann.pt``), T = 2, 4;
    - ``1/``: AdaFire (φ ≤ 4) on that ANN, T = 2, 4 (``adaptive_T*.json``);
    - ``more/partial/``: a partial record (status ``running``) holding run 0's T = 2 metrics;
    - ``more/failed/``: a failed record (``write_failure``); ``more/corrupt/``: a truncated
      ``metrics.json``; ``more/killed/``: a Hydra job folder (``.hydra/``) without one;
    - ``.submitit/0/``: a record in a folder the search skips.
    """
    root = tmp_path_factory.mktemp("sweep")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits on a busy machine
    try:
        _make_sweep(root, compose_config, tiny_overrides)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(autouse=True)
def _one_thread_kernels(monkeypatch):
    """Notebook kernels run torch on one thread (tiny tensors; steadier on busy cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _make_sweep(root, compose_config, tiny_overrides) -> None:
    from adacal.pipeline import run
    from adacal.reporting.metrics_file import read_metrics, write_failure, write_metrics

    common = [
        *(o for o in tiny_overrides if not o.startswith(("snn.", "trainer.max_epochs"))),
        "trainer.max_epochs=2",
        "dataset.train_limit=600",
        "snn.T=[2,4]",
        "snn.anytime=[1,2,4]",
        "calibration.threshold.method=max",  # test_conversion_error_notebook relies on it
    ]
    run(compose_config(common, output_dir=root / "0"))
    adafire = [
        f"ann.checkpoint={root / '0' / 'ann.pt'}",
        "neuron=adafire",
        "neuron.phi_init=4",
        "neuron.phi_target=2",
        "neuron.batch_size=32",
        "snn.compare_baseline=false",
    ]
    run(compose_config([*common, *adafire], output_dir=root / "1"))
    first = read_metrics(root / "0")
    partial = {k: v for k, v in first["metrics"].items() if not k.endswith("_T4")}
    write_metrics(root / "more" / "partial", partial, first["config"], status="running")
    write_failure(
        root / "more" / "failed",
        RuntimeError("boom: out of memory at T=4"),
        config=first["config"],
    )
    (root / "more" / "corrupt").mkdir()
    (root / "more" / "corrupt" / "metrics.json").write_text('{"status": "ok", "metr')
    (root / "more" / "killed" / ".hydra").mkdir(parents=True)
    (root / "more" / "killed" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    write_metrics(root / ".submitit" / "0", first["metrics"], first["config"])


def test_conversion_error_notebook(repo_root, sweep, monkeypatch):
    """IF error falls with T at every site; burst firing removes error at the same T; the first
    site (fed by the analog first layer) with max thresholds: burst φ=4 at T=2 has exactly the
    levels of IF at T=8 (step max z/8), so the two errors coincide."""
    monkeypatch.setenv("ADACAL_RUN_DIR", str(sweep / "0"))
    monkeypatch.setenv("ADACAL_T", "2,8")
    monkeypatch.setenv("ADACAL_IMAGES", "32")
    monkeypatch.setenv("ADACAL_PHI", "1,2,4")
    monkeypatch.setenv("ADACAL_DEVICE", "cpu")
    monkeypatch.delenv("ADACAL_CALIBRATION_STEPS", raising=False)
    summary, nb = _execute(repo_root, "conversion_error.ipynb")

    assert summary["model"] == "small_cnn/digits"
    assert summary["images"] == 32 and summary["T"] == [2, 8]
    assert summary["methods"] == ["if", "burst φ=2", "burst φ=4"]
    out, site = summary["output_rel_l2"], summary["site_rel_l2"]
    n_sites = len(summary["sites"])
    assert n_sites >= 3
    for method in summary["methods"]:
        assert len(site[method]["2"]) == n_sites
        assert all(math.isfinite(e) and e >= 0 for e in site[method]["2"] + site[method]["8"])
    # IF: more timesteps, less error, at every site and at the output
    assert out["if"]["8"] < out["if"]["2"]
    assert all(e8 < e2 for e2, e8 in zip(site["if"]["2"], site["if"]["8"], strict=True))
    # burst firing removes conversion error at the same (small) T
    assert out["burst φ=4"]["2"] <= out["burst φ=2"]["2"] <= out["if"]["2"]
    assert all(b <= i for i, b in zip(site["if"]["2"], site["burst φ=4"]["2"], strict=True))
    # the run fits thresholds with calibration.threshold.method=max (_make_sweep)
    assert site["burst φ=4"]["2"][0] == pytest.approx(site["if"]["8"][0], rel=1e-4)
    assert _images(nb) == 2


def test_explore_sweep_notebook(repo_root, sweep, monkeypatch):
    monkeypatch.setenv("ADACAL_SWEEP_DIR", str(sweep))
    monkeypatch.delenv("ADACAL_RATE_T", raising=False)
    summary, nb = _execute(repo_root, "explore_sweep.ipynb")

    assert summary["runs"] == 6
    assert summary["status"] == {"ok": 2, "running": 1, "failed": 2, "missing": 1}
    assert [f["run"] for f in summary["failed"]] == ["more/corrupt", "more/failed"]
    assert summary["failed"][0]["error"].startswith("unreadable: ")
    assert summary["failed"][1]["error"] == "RuntimeError: boom: out of memory at T=4"
    assert summary["running"] == ["more/partial"]
    assert summary["missing"] == ["more/killed"]
    assert summary["metric"] == "acc"
    assert summary["methods"] == ["adafire", "if"]
    # the partial record repeats the IF method at T = 2: its own series, labelled with its folder
    assert summary["series"] == ["adafire", "if", "if [more/partial]"]
    assert summary["timesteps"] == [2, 4]
    assert summary["rows"] == 2 + 2 + 1
    assert summary["rate_T"] == 2  # the largest T every run with rates reports
    assert summary["phi_runs"] == ["1"]
    assert _images(nb) == 3  # score/energy, firing rates, φ per site
