"""Checkpoints are read without running pickled code, and partial loads are refused by name."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import pytest
import torch

from dcase9.errors import CheckpointError
from dcase9.files import sha256_file
from dcase9.models.checkpoints import (empty_module, load_weights, non_finite_keys, read_checkpoint, state_dict_of,
                                      strip_prefix)


class RunsCode:
    """Unpickling this would create a marker file: the loader must never do it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class CustomHparams:
    def __init__(self) -> None:
        self.lr = 1e-3


def lightning_like(tmp_path: Path, extra: dict) -> Path:
    state = collections.OrderedDict({"ss_model.w": torch.randn(3, 2), "query_encoder.model.v": torch.randn(4)})
    path = tmp_path / "model.ckpt"
    torch.save({"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.0.0", "state_dict": state,
                "optimizer_states": [], "lr_schedulers": [], **extra}, path)
    return path


def test_plain_lightning_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    path = lightning_like(tmp_path, {"hparams_name": "kwargs", "hyper_parameters": {"lr": 1e-3}})
    checkpoint = read_checkpoint(path)
    weights = state_dict_of(checkpoint)
    assert set(strip_prefix(weights, "ss_model.")) == {"w"}


def test_pickled_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = lightning_like(tmp_path, {"hyper_parameters": {"evil": RunsCode(marker), "custom": CustomHparams()}})
    with pytest.warns(UserWarning, match="inert.*CustomHparams"):
        checkpoint = read_checkpoint(path)
    assert not marker.exists()
    assert torch.is_tensor(state_dict_of(checkpoint)["ss_model.w"])


def test_trust_flag_uses_full_unpickling(tmp_path: Path) -> None:
    path = lightning_like(tmp_path, {"hyper_parameters": {"custom": CustomHparams()}})
    assert isinstance(read_checkpoint(path, trust=True)["hyper_parameters"]["custom"], CustomHparams)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        read_checkpoint(bad)


def test_partial_loads_are_refused_naming_keys() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    good = {k: v.clone() for k, v in module.state_dict().items()}
    load_weights(module, {**good, "fixed.dft": torch.zeros(2)}, source="x", ignore=["fixed.*"])
    broken = dict(good)
    broken["0.weight"] = torch.zeros(4, 2)
    del broken["1.bias"]
    broken["extra.thing"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_weights(module, broken, source="ckpt.pt")
    message = str(info.value)
    assert "1 missing key(s): 1.bias" in message
    assert "1 unexpected key(s): extra.thing" in message
    assert "0.weight: checkpoint (4, 2), model (3, 2)" in message


def test_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_zip_checkpoints_are_memory_mapped_and_legacy_ones_still_read(tmp_path: Path, monkeypatch) -> None:
    calls: list[bool] = []
    real_load = torch.load

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(bool(kwargs.get("mmap")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    weights = {"w": torch.randn(3, 2)}
    torch.save(weights, tmp_path / "zip.pt")
    torch.save(weights, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name, mapped in (("zip.pt", True), ("legacy.pt", False)):
        calls.clear()
        assert torch.equal(read_checkpoint(tmp_path / name)["w"], weights["w"])
        assert calls == [mapped]


def test_assign_load_fills_an_empty_module_and_casts_to_its_dtypes() -> None:
    reference = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    module = empty_module(lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3)))
    assert all(p.is_meta for p in module.parameters())
    given = {k: v.double() if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    load_weights(module, given, source="x", assign=True)
    state = module.state_dict()
    assert not any(t.is_meta for t in state.values())
    assert all(state[k].dtype == v.dtype and torch.equal(state[k], v) for k, v in reference.state_dict().items())
    assert all(p.requires_grad for p in module.parameters())
    with pytest.raises(CheckpointError, match="missing key"):
        load_weights(empty_module(lambda: torch.nn.Linear(2, 3)), {"weight": torch.zeros(3, 2)}, source="x",
                     assign=True)


def test_non_finite_weights_are_refused_naming_the_file_the_count_and_the_first_keys() -> None:
    module = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)], torch.nn.BatchNorm1d(2))
    weights = {k: v.clone() for k, v in module.state_dict().items()}  # 13 tensors, one an integer counter
    for key in ("0.weight", "1.bias", "2.weight", "2.bias", "3.weight", "3.bias"):
        weights[key][0] = float("nan")
    weights["4.running_var"][1] = float("-inf")
    with pytest.raises(CheckpointError) as info:
        load_weights(module, weights, source="run/last.ckpt (ss_model.*)")
    assert str(info.value).startswith("run/last.ckpt (ss_model.*): 7 of 13 tensors hold NaN or infinite values "
                                      "(0.weight, 1.bias, 2.weight, 2.bias, 3.weight and 2 more)")
    assert torch.isfinite(module[0].weight).all()  # nothing was loaded
    half = {k: v.half() if v.is_floating_point() else v for k, v in module.state_dict().items()}
    assert non_finite_keys(half) == []
    half["0.bias"][1] = float("inf")
    assert non_finite_keys(half) == ["0.bias"]


def test_a_plain_pickle_names_the_trust_flag_and_loads_when_trusted(tmp_path: Path) -> None:
    weights = {"state_dict": {"ss_model.w": torch.randn(3, 2)}}
    path = tmp_path / "model.pkl"
    with path.open("wb") as handle:
        pickle.dump(weights, handle)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "plain Python pickle" in message and "pass --trust-checkpoint (Python: trust_checkpoint=True" in message
    assert "weights_only" not in message
    assert torch.equal(read_checkpoint(path, trust=True)["state_dict"]["ss_model.w"], weights["state_dict"]["ss_model.w"])
    # torch's own legacy format, pickled with protocol 4, which its weights-only reader does not take
    legacy = tmp_path / "legacy4.pt"
    torch.save(weights, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(legacy)
    assert "weights-only reader cannot read it" in str(info.value) and "weights_only" not in str(info.value)
    assert "pass --trust-checkpoint" in str(info.value)
    assert torch.equal(read_checkpoint(legacy, trust=True)["state_dict"]["ss_model.w"], weights["state_dict"]["ss_model.w"])


def test_a_damaged_file_is_refused_with_a_message_trusted_or_not(tmp_path: Path) -> None:
    path = lightning_like(tmp_path, {})
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:2000])
    for trust in (False, True):  # never torch's own exception (a traceback on the command line)
        with pytest.raises(CheckpointError, match="cut.ckpt: not a readable torch checkpoint"):
            read_checkpoint(tmp_path / "cut.ckpt", trust=trust)
