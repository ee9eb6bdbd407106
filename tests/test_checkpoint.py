"""Checkpoints: sha256 sidecar written and checked, weights-only loading, clear mismatch errors."""

from __future__ import annotations

import hashlib
import pickle

import pytest
import torch
from torch import nn

from adacal.checkpoint import load_state_dict, save_state_dict, sha256_file, sidecar_paths
from adacal.errors import ConfigError


def _net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, classes),
    )


def test_round_trip_writes_and_verifies_hash(tmp_path):
    path = tmp_path / "ann.pt"
    digest = save_state_dict(_net(), path, command="python run.py experiment=x")
    sha_path, cmd_path = sidecar_paths(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    assert sha_path.read_text() == f"{digest}  ann.pt\n"
    assert cmd_path.read_text() == "python run.py experiment=x\n"

    fresh = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )
    assert load_state_dict(fresh, path) == digest
    for key, value in _net().state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_flipped_byte_is_refused(tmp_path):
    path = tmp_path / "ann.pt"
    save_state_dict(_net(), path, command="cmd")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as err:
        load_state_dict(_net(), path)
    assert err.value.key == "ann.checkpoint"
    assert "sha256" in str(err.value) and "corrupt" in str(err.value)


def test_missing_file_and_missing_sidecar(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_state_dict(_net(), tmp_path / "nope.pt", key="snn.checkpoint")
    assert err.value.key == "snn.checkpoint"

    path = tmp_path / "ann.pt"
    save_state_dict(_net(), path, command="cmd")
    sidecar_paths(path)[0].unlink()
    with pytest.raises(ConfigError, match="sha256sum"):
        load_state_dict(_net(), path)


def test_wrong_architecture_names_tensors(tmp_path):
    path = tmp_path / "ann.pt"
    save_state_dict(_net(classes=3), path, command="cmd")
    with pytest.raises(ConfigError) as err:
        load_state_dict(_net(classes=10), path)
    message = str(err.value)
    assert "4.weight" in message and "architecture=" in message and "dataset=" in message

    other = nn.Sequential(*_net(classes=3).children(), nn.ReLU(), nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="missing tensors: 6.weight, 6.bias"):
        load_state_dict(other, path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": _Payload()}, path)
    path.with_name("evil.pt.sha256").write_text(f"{sha256_file(path)}  evil.pt\n")
    with pytest.raises(ConfigError, match="weights_only"):
        load_state_dict(nn.Linear(1, 1), path)


class _Payload:
    """An arbitrary object: torch.load(weights_only=True) must not unpickle it."""

    def __reduce__(self):
        return (pickle.loads, (pickle.dumps("not a tensor"),))
