"""adacal.keys: every metric key is built and parsed by one module, and round-trips."""

from __future__ import annotations

import json

import pytest

from adacal import keys
from adacal.keys import Key

BUILT = [
    # (built key, the string it must be, its parse)
    (keys.key(keys.TEST, "acc", 4), "snn/test/acc_T4", Key("snn/test", "acc", 4)),
    (keys.key(keys.TEST, "miou", 16), "snn/test/miou_T16", Key("snn/test", "miou", 16)),
    (
        keys.key(keys.UNCOMPRESSED, "pixel_acc", 8),
        "snn/uncompressed/pixel_acc_T8",
        Key("snn/uncompressed", "pixel_acc", 8),
    ),
    (
        keys.key(keys.TEST, "saving_vs_baseline", 32),
        "snn/test/saving_vs_baseline_T32",
        Key("snn/test", "saving_vs_baseline", 32),
    ),
    (
        keys.key(keys.TIME, "evaluation_full_s", 2),
        "snn/time/evaluation_full_s_T2",
        Key("snn/time", "evaluation_full_s", 2),
    ),
    (keys.key("", "sops", 4), "sops_T4", Key("", "sops", 4)),  # the baseline's, unprefixed
    (
        keys.site_key(keys.TEST, "rate", 12, 4),
        "snn/test/site12_rate_T4",
        Key("snn/test", "rate", 4, site=12),
    ),
    (
        keys.site_key(keys.FULL, "acs", 0, 64),
        "snn/full/site0_acs_T64",
        Key("snn/full", "acs", 64, site=0),
    ),
    (
        keys.site_key(keys.ADAFIRE, keys.PHI, 3, 8),
        "snn/adafire/site3_phi_T8",
        Key("snn/adafire", "phi", 8, site=3),
    ),
    (
        keys.site_key(keys.snn("ssc"), keys.RATIO, 2, 8),
        "snn/ssc/site2_ratio_T8",
        Key("snn/ssc", "ratio", 8, site=2),
    ),
    (
        keys.class_key(keys.TEST, "iou", 10, 4),
        "snn/test/class10_iou_T4",
        Key("snn/test", "iou", 4, cls=10),
    ),
    (
        keys.step_key(keys.TEST, "exit", 1, 4),
        "snn/test/exit_t1_T4",
        Key("snn/test", "exit", 4, step=1),
    ),
    (
        keys.anytime_key(keys.TEST, "acc", 2, 4),
        "snn/test/anytime_T4/acc_t2",
        Key("snn/test", "acc", 4, step=2, anytime=True),
    ),
    (
        keys.anytime_key(keys.TEST, "pixel_acc", 128, 256),
        "snn/test/anytime_T256/pixel_acc_t128",
        Key("snn/test", "pixel_acc", 256, step=128, anytime=True),
    ),
]


@pytest.mark.parametrize(("built", "text", "parsed"), BUILT, ids=[t for _, t, _ in BUILT])
def test_build_then_parse_round_trips(built, text, parsed):
    assert built == text
    assert keys.parse(text) == parsed
    assert parsed.text() == text


@pytest.mark.parametrize(
    "text",
    [
        "ann/test/acc",
        "ann/energy_uj",
        keys.ANN_MACS,
        "snn/test/acc",
        "snn/test/acc_T",
        "snn/test/acc_Tx",
        "snn/test/acc_T04",  # key() never writes a leading zero
        "snn/test/acc_T-4",
        "snn/test/anytime_T4/acc",
        "",
        "_T4",
        "snn/test/",
    ],
)
def test_a_key_without_T_parses_to_none(text):
    assert keys.parse(text) is None
    assert keys.split_T(text) is None


def test_split_T():
    assert keys.split_T("snn/test/acc_T4") == ("snn/test/acc", 4)
    assert keys.split_T("snn/adafire/site3_phi_T16") == ("snn/adafire/site3_phi", 16)
    assert keys.split_T("sops_T2") == ("sops", 2)


def test_plain_and_kinds():
    assert keys.parse("snn/test/acc_T4").plain
    assert not keys.parse("snn/test/site0_rate_T4").plain
    assert not keys.parse("snn/test/exit_t2_T4").plain
    assert not keys.parse("snn/test/anytime_T4/acc_t2").plain
    # a name that only looks like a site/class/step part stays a name
    assert keys.parse("snn/test/sites_T4") == Key("snn/test", "sites", 4)
    assert keys.parse("snn/test/classic_T4") == Key("snn/test", "classic", 4)


METRICS = {
    "ann/test/acc": 0.9,
    "snn/test/acc_T8": 0.8,
    "snn/test/acc_T2": 0.5,
    "snn/full/acc_T4": 0.7,
    "snn/test/miou_T16": 0.3,
    "snn/test/anytime_T32/acc_t4": 0.6,
    "snn/test/site1_rate_T8": 0.2,
    "snn/test/site0_rate_T8": 0.1,
    "snn/test/site10_rate_T8": 0.3,
    "snn/test/site0_rate_T2": 0.4,
    "snn/adafire/site0_phi_T8": 2.0,
}


def test_timesteps_of():
    assert keys.timesteps_of(METRICS, keys.TEST, "acc") == [2, 8]
    assert keys.timesteps_of(METRICS, keys.FULL, "acc") == [4]
    assert keys.timesteps_of(METRICS, keys.TEST, "miou") == [16]
    assert keys.timesteps_of(METRICS, keys.TEST, "rate") == []  # site keys are not the rate


def test_site_values_by_site_in_order():
    assert keys.site_values(METRICS, keys.TEST, "rate", 8) == {0: 0.1, 1: 0.2, 10: 0.3}
    assert list(keys.site_values(METRICS, keys.TEST, "rate", 8)) == [0, 1, 10]
    assert keys.site_values(METRICS, keys.ADAFIRE, keys.PHI, 8) == {0: 2.0}
    assert keys.site_values(METRICS, keys.ADAFIRE, keys.PHI, 2) == {}


def test_prefix_helpers():
    assert keys.under("snn/test/acc_T4", keys.TEST)
    assert not keys.under("snn/testing/acc_T4", keys.TEST)
    assert keys.move("snn/full/acc_T4", keys.FULL, keys.TEST) == "snn/test/acc_T4"
    assert keys.move("snn/test/acc_T4", keys.FULL, keys.TEST) is None
    assert keys.snn("ssc") == "snn/ssc" and keys.snn_name("snn/ssc") == "ssc"
    assert keys.snn_name("snn/a/b") is None and keys.snn_name("ann/test") is None
    assert keys.ann_key("miou") == "ann/test/miou"


def test_every_committed_key_round_trips(repo_root):
    """Every key of every committed metrics.json: parse → text gives the key back; the keys
    that do not parse are the ANN's (no T)."""
    files = sorted((repo_root / "experiments" / "results").rglob("metrics.json"))
    assert files
    seen_kinds = set()
    for path in files:
        for text in json.loads(path.read_text()).get("metrics", {}):
            k = keys.parse(text)
            if k is None:
                assert text.startswith("ann/"), (path, text)
                continue
            assert k.text() == text, (path, text)
            seen_kinds.add(
                "anytime"
                if k.anytime
                else "site"
                if k.site is not None
                else "class"
                if k.cls is not None
                else "step"
                if k.step is not None
                else "plain"
            )
    assert seen_kinds == {"plain", "site", "class", "step", "anytime"}


def test_keys_imports_nothing_from_adacal(repo_root):
    """The bottom layer: adacal.keys imports no other adacal module."""
    source = (repo_root / "src" / "adacal" / "keys.py").read_text()
    assert "from adacal" not in source and "import adacal" not in source
