"""Device placement, autocast and batch invariance, on the CPU always and on CUDA where there is one;
and, on the meta device, that no forward pass makes a tensor off its inputs' device.

The CUDA cases carry the `gpu` marker and are skipped without CUDA; `benchmarks/gpu_check.sh` runs
them first (`pytest -m gpu tests/test_gpu.py`). The CPU cases run the same code in every test run.
Every system is built the way `dcase9 infer` builds it (registry weights given as local files in
the official layouts, tiny sizes).
"""

from __future__ import annotations

import builtins
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from tests.tiny_audioldm import TINY_MASK_NET, write_system3_checkpoint, write_tiny_vae, write_tiny_vocoder
from tests.tiny_models import system_config, tokenizer_folder, trained_like_batch_norms, write_lightning_checkpoint
from dcase9 import api
from dcase9.errors import ConfigError
from dcase9.models.resunet import ResUNet30
from dcase9.models.tiny import TINY_CLAP

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                       reason="needs CUDA")])
DEVICES = ["cpu", CUDA]
SYSTEMS = ("baseline", "2", "3", "3-roundtrip", "mixture", "oracle")
# A two-level ResUNet30 (the official design and key names, 8-16 channels): quick on the CPU too.
SMALL_NET = {"channels": [8, 16], "pools": [[2, 2], [2, 2]]}


def small_resunet(n_fft: int, hop_length: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = ResUNet30(n_fft=n_fft, hop_length=hop_length, channels=SMALL_NET["channels"],
                    pools=[tuple(p) for p in SMALL_NET["pools"]])
    return trained_like_batch_norms(net).state_dict()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What each system needs: checkpoint, weights and options, all tiny and in the official layouts."""
    root = tmp_path_factory.mktemp("gpu-assets")
    tokenizer = tokenizer_folder(root / "tokenizer")
    vae, vocoder = write_tiny_vae(root / "vae"), write_tiny_vocoder(root / "vocoder")
    baseline_stft, audiosep_stft = {"n_fft": 256, "hop_length": 64}, {"n_fft": 512, "hop_length": 128}
    return {
        "baseline": {"checkpoint": write_lightning_checkpoint(root / "baseline.ckpt", resunet=small_resunet(256, 64)),
                     "weights": {"roberta-base-tokenizer": tokenizer},
                     "system_options": {**system_config(baseline_stft), **SMALL_NET}},
        "2": {"checkpoint": write_lightning_checkpoint(root / "audiosep.ckpt", resunet=small_resunet(512, 128)),
              "weights": {"roberta-base-tokenizer": tokenizer},
              "system_options": {**system_config(audiosep_stft), **SMALL_NET}},
        "3": {"checkpoint": write_system3_checkpoint(root / "system3.ckpt"),
              "weights": {"roberta-base-tokenizer": tokenizer, "audioldm-vae": vae, "audioldm-vocoder": vocoder},
              "system_options": {"mask_net": TINY_MASK_NET, "clap": dict(TINY_CLAP)}},
        "3-roundtrip": {"weights": {"audioldm-vae": vae, "audioldm-vocoder": vocoder}},
        "mixture": {}, "oracle": {},
    }


def build(system: str, assets: dict[str, Any], device: str) -> Any:
    """A system's model, built as `api.infer` builds it."""
    given = assets[system]
    return api.load_separator(system, checkpoint=given.get("checkpoint"), weights=given.get("weights"),
                              system_options=given.get("system_options"), device=device, offline=True).model


def modules_of(model: nn.Module) -> list[nn.Module]:
    """A system's model is one module (its parts are submodules): every parameter and buffer is reached."""
    assert isinstance(model, nn.Module)
    return [model]


def separate(system: str, assets: dict[str, Any], data: Path, out: Path, device: str, **options: Any) -> Any:
    given = assets[system]
    return api.infer(system, data, out, device=device, progress=False, **options, checkpoint=given.get("checkpoint"),
                     weights=given.get("weights"), system_options=given.get("system_options"), offline=True)


def read_outputs(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: sf.read(path, dtype="float32")[0] for path in sorted(folder.glob("*.wav"))}


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return float("inf") if error == 0 else 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / error)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("system", SYSTEMS)
def test_every_system_lives_and_runs_on_the_device(system: str, device: str, assets: dict[str, Any]) -> None:
    separator = build(system, assets, device)
    expected = torch.device(device).type
    for module in modules_of(separator):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            assert tensor.device.type == expected, f"{system}: {name} is on {tensor.device}"
    clap = getattr(separator, "clap", None)
    if clap is not None:  # text-queried systems build CLAP's text tower only
        assert not clap.has_audio_tower
    rate = separator.sample_rate
    mixture = 0.1 * torch.randn(2, rate, device=device)
    with torch.inference_mode():
        conditions = separator.encode_queries(["a dog barks", "rain on a roof"])
        if conditions is not None:
            assert conditions.device.type == expected and conditions.shape == (2, 512)
        output = separator.separate(mixture, conditions, mixture.flip(-1))
    assert output.device.type == expected and output.shape == mixture.shape
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_stays_close_to_fp32(precision: str, device: str, assets: dict[str, Any], demo_root: Path,
                                      tmp_path: Path) -> None:
    data = demo_root / "validation"
    if device == "cpu" and precision == "fp16":
        with pytest.raises(ConfigError, match="fp16 autocast needs a GPU"):
            separate("baseline", assets, data, tmp_path / precision, device, precision=precision, limit=2)
        return
    separate("baseline", assets, data, tmp_path / "fp32", device, limit=4, batch_size=4)
    run = separate("baseline", assets, data, tmp_path / precision, device, precision=precision, limit=4, batch_size=4)
    assert run.written == 4 and run.device.startswith(device)
    reference, reduced = read_outputs(tmp_path / "fp32"), read_outputs(tmp_path / precision)
    assert reference.keys() == reduced.keys()
    for name, audio in reduced.items():
        assert np.isfinite(audio).all() and audio.shape == reference[name].shape == (160000,)
        # The STFT, masks and ISTFT stay fp32; only the conv body runs in reduced precision.
        assert snr_db(reference[name], audio) > 15, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("system", ["baseline", "3"])
def test_batch_of_eight_equals_one_at_a_time(system: str, device: str, assets: dict[str, Any], demo_root: Path,
                                             tmp_path: Path) -> None:
    data = demo_root / "validation"
    batch = 8 if device == "cuda" or system != "3" else 4  # System 3's codec is slow on the CPU
    for size in (batch, 1):
        separate(system, assets, data, tmp_path / f"b{size}", device, limit=batch, batch_size=size)
    together, alone = read_outputs(tmp_path / f"b{batch}"), read_outputs(tmp_path / "b1")
    assert len(together) == batch and together.keys() == alone.keys()
    # Float round-off only: kernels may differ with the batch size (cuDNN picks per shape; TF32 on CUDA).
    floor = 80 if device == "cpu" else 40
    for name, audio in together.items():
        assert snr_db(alone[name], audio) > floor, name


@pytest.mark.parametrize("system", SYSTEMS)
def test_no_tensor_is_made_off_the_device_inside_a_system(system: str, assets: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a GPU, CPU runs cannot show a tensor that a forward pass makes on the CPU (a window,
    a mask, positions) next to CUDA inputs. The meta device can: each system is built there, as
    `dcase9 infer --device cuda` builds it (no CPU-only inference form), and any op mixing a CPU
    tensor with meta ones fails. Three things have no meta kernel and are stood in for: autocast
    (meta has none), the ISTFT (its window check reads values; the stand-in checks the window's
    device) and the text tower's all-tokens-real check (it reads a value)."""
    from dcase9.models.clap import text_tower

    autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda device_type, *args, **kwargs: nullcontext()
                        if device_type == "meta" else autocast(device_type, *args, **kwargs))
    istft = torch.istft

    def meta_istft(spec: torch.Tensor, *args: Any, window: torch.Tensor | None = None, length: int | None = None,
                   **kwargs: Any) -> torch.Tensor:
        if spec.device.type != "meta":
            return istft(spec, *args, window=window, length=length, **kwargs)
        assert window is not None and window.device == spec.device, f"ISTFT window on {window and window.device}"
        return torch.zeros(spec.shape[0], length, device=spec.device)

    monkeypatch.setattr(torch, "istft", meta_istft)
    monkeypatch.setattr(text_tower, "bool", lambda value: True if isinstance(value, torch.Tensor)
                        and value.is_meta else builtins.bool(value), raising=False)

    separator = build(system, assets, "meta")
    for module in modules_of(separator):
        assert all(t.is_meta for t in [*module.parameters(), *module.buffers()])
    mixture = torch.zeros(2, separator.sample_rate, device="meta")
    with torch.inference_mode():
        conditions = separator.encode_queries(["a dog barks", "rain on a roof"])
        output = separator.separate(mixture, conditions, mixture)
    assert output.is_meta and output.shape == mixture.shape
    if conditions is not None:
        assert conditions.is_meta and conditions.shape == (2, 512)
