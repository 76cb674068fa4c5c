"""Tests of our ResUNet30 (toolkit/models/resunet.py) against the official layout and numbers.

Fixtures (tests/fixtures/):

* `resunet30_state_dict_audiosep32k.txt`: names and shapes of the 332 state-dict entries of the
  official AudioSep 32 kHz ResUNet30 (one `name (shape)` per line, in state-dict order).
* `resunet30_reference_16k.npz`, `resunet30_reference_32k.npz`: outputs of the reference
  implementation for weights that `randomize_weights(model, seed)` below regenerates. Produced in a
  scratch environment (not part of this repository) as follows: build our `ResUNet30` for the
  config, call `randomize_weights(model, seed)`, copy its state dict into the reference
  `models.resunet.ResUNet30(input_channels=1, output_channels=1, condition_size=512)` with
  `strict=True` (only the reference's fixed `base.stft.*` / `base.istft.*` tensors missing), put
  both in eval mode and store the reference's `{"mixture": x, "condition": c}` -> `waveform`.
  Reference code: github.com/Audio-AGI/dcase2024_task9_baseline @ b9ebf346ae0b9e90b7d5c2143686e909c54a72f0
  (16 kHz, 1024/160) and github.com/Audio-AGI/AudioSep @ 944583f18b84589dc965de3ad77525c945334252
  (32 kHz, 2048/320), `models/resunet.py` + `models/base.py`, with torchlibrosa 0.1.0 (librosa
  0.11.0), torch 2.13.0 CPU, float32. The mixture is Gaussian noise of std 0.1 and an odd length;
  the condition is a random unit vector per item. Measured then on 10 s / 1.37 s inputs, batch 1 and
  3: relative L2 difference ours vs reference 4.3e-7 (16 kHz) and 1.8e-6 or less (32 kHz).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dcase9.errors import CheckpointError
from dcase9.models import resunet as resunet_module
from dcase9.models.resunet import (
    RESUNET30_CONFIGS,
    FiLMGenerator,
    FiLMResUNet,
    InferenceConvBlockRes,
    InferenceDecoderBlockRes,
    ResUNet30,
    inference_form,
    load_resunet30,
)

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_KEYS_32K = FIXTURES / "resunet30_state_dict_audiosep32k.txt"
CONFIG_16K, CONFIG_32K = "dcase2024-baseline-16k", "audiosep-32k"
IGNORED_PREFIXES = ("base.stft.", "base.istft.")


def randomize_weights(model: nn.Module, seed: int) -> None:
    """Fill every parameter and batch-norm buffer from a seeded generator, deterministically.

    Modules are visited in sorted order of their names; per module type:
    BatchNorm2d: weight U(0.5, 1.5), bias N(0, 0.1), running_mean N(0, 0.2), running_var U(0.5, 2);
    Conv2d / ConvTranspose2d / Linear: weight N(0, 1/fan_in), bias N(0, 0.1), where fan_in is
    weight.shape[0] for a transposed conv (kernel = stride) and weight[0].numel() otherwise.
    Randomised running statistics and FiLM layers make a wrong axis or a dropped beta visible.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in sorted(model.named_modules(), key=lambda item: item[0]):
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.normal_(0.0, 0.1, generator=gen)
                module.running_mean.normal_(0.0, 0.2, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                transposed = isinstance(module, nn.ConvTranspose2d)
                fan_in = module.weight.shape[0] if transposed else module.weight[0].numel()
                module.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=gen)


def official_shapes_32k() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in OFFICIAL_KEYS_32K.read_text().splitlines():
        name, shape = re.fullmatch(r"(\S+) \(([\d, ]*)\)", line.strip()).groups()
        shapes[name] = tuple(int(d) for d in shape.replace(" ", "").split(",") if d)
    return shapes


def shapes_of(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def sdr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return 10 * math.log10(reference.square().sum().item() / (estimate - reference).square().sum().item())


@pytest.fixture(scope="module")
def model16() -> ResUNet30:
    model = ResUNet30.from_config(CONFIG_16K).eval()
    randomize_weights(model, seed=0)
    return model


def noise(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mixture = 0.1 * torch.randn(batch, 1, length, generator=gen)
    condition = nn.functional.normalize(torch.randn(batch, 512, generator=gen), dim=-1)
    return mixture, condition


# ---------------------------------------------------------------------------------------------
# Layout of the state dict


def test_state_dict_equals_official_32k_list_in_order() -> None:
    official = [(k, s) for k, s in official_shapes_32k().items() if not k.startswith(IGNORED_PREFIXES)]
    assert len(official_shapes_32k()) == 332 and len(official) == 327
    ours = list(shapes_of(ResUNet30.from_config(CONFIG_32K)).items())
    assert ours == official


def test_16k_state_dict_differs_from_32k_only_in_bn0() -> None:
    official = {k: s for k, s in official_shapes_32k().items() if not k.startswith(IGNORED_PREFIXES)}
    ours = shapes_of(ResUNet30.from_config(CONFIG_16K))
    assert ours.keys() == official.keys()
    differing = {k: (official[k], ours[k]) for k in ours if ours[k] != official[k]}
    assert differing == {"base.bn0.weight": ((1025,), (513,)), "base.bn0.bias": ((1025,), (513,)),
                         "base.bn0.running_mean": ((1025,), (513,)),
                         "base.bn0.running_var": ((1025,), (513,))}


@pytest.mark.parametrize(("config", "expected"), [(CONFIG_32K, 26_447_941), (CONFIG_16K, 26_446_917)])
def test_trainable_parameter_count(config: str, expected: int) -> None:
    model = ResUNet30.from_config(config)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert sum(p.numel() for p in model.parameters()) == expected
    assert len(model.film) == 38
    assert sum(p.numel() for p in model.film.parameters()) == 5_056_128


# ---------------------------------------------------------------------------------------------
# Loading checkpoints


def reference_stft_tensors(n_fft: int) -> dict[str, torch.Tensor]:
    """Stand-ins for the reference's fixed DFT tensors, with the official shapes."""
    bins = n_fft // 2 + 1
    return {"base.stft.conv_real.weight": torch.zeros(bins, 1, n_fft),
            "base.stft.conv_imag.weight": torch.zeros(bins, 1, n_fft),
            "base.istft.ola_window": torch.zeros(n_fft),
            "base.istft.conv_real.weight": torch.zeros(n_fft, n_fft, 1),
            "base.istft.conv_imag.weight": torch.zeros(n_fft, n_fft, 1)}


def lightning_checkpoint(model: ResUNet30) -> dict:
    weights = {**reference_stft_tensors(model.n_fft), **model.state_dict()}
    state_dict = {"ss_model." + k: v for k, v in weights.items()}
    state_dict["query_encoder.model.text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    state_dict["query_encoder.model.text_projection.0.weight"] = torch.zeros(512, 768)
    return {"state_dict": state_dict, "epoch": 3, "global_step": 200000,
            "pytorch-lightning_version": "2.0.0", "optimizer_states": [], "lr_schedulers": []}


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_loads_lightning_checkpoint_file(model16: ResUNet30, tmp_path: Path) -> None:
    path = tmp_path / "audiosep_16k,baseline,step=200000.ckpt"
    torch.save(lightning_checkpoint(model16), path)
    loaded = load_resunet30(path, CONFIG_16K)
    assert not loaded.training
    assert_same_weights(loaded, model16)


def test_loads_plain_state_dicts_with_and_without_prefix(model16: ResUNet30, tmp_path: Path) -> None:
    path = tmp_path / "resunet30.pt"
    torch.save(model16.state_dict(), path)
    assert_same_weights(load_resunet30(path, CONFIG_16K), model16)
    prefixed = {"ss_model." + k: v for k, v in model16.state_dict().items()}
    assert_same_weights(load_resunet30(prefixed, CONFIG_16K), model16)


def _renamed(sd: dict) -> None:
    sd["ss_model.base.encoder_block3.conv_block1.bn2.weightt"] = sd.pop(
        "ss_model.base.encoder_block3.conv_block1.bn2.weight")


def _missing(sd: dict) -> None:
    del sd["ss_model.film.decoder_block2->conv_block2->beta1.bias"]


def _misshaped(sd: dict) -> None:
    sd["ss_model.base.after_conv.weight"] = torch.zeros(3, 64, 1, 1)


def _unexpected(sd: dict) -> None:
    sd["ss_model.base.conv_block8a.conv_block1.conv1.weight"] = torch.zeros(384, 384, 3, 3)


@pytest.mark.parametrize(("corrupt", "named"), [
    (_renamed, ["missing key(s): base.encoder_block3.conv_block1.bn2.weight",
                "unexpected key(s): base.encoder_block3.conv_block1.bn2.weightt"]),
    (_missing, ["missing key(s): film.decoder_block2->conv_block2->beta1.bias"]),
    (_misshaped, ["mis-shaped key(s): base.after_conv.weight: checkpoint (3, 64, 1, 1), model (3, 32, 1, 1)"]),
    (_unexpected, ["unexpected key(s): base.conv_block8a.conv_block1.conv1.weight"]),
])
def test_miskeyed_checkpoint_is_refused_naming_the_key(model16: ResUNet30, tmp_path: Path,
                                                       corrupt, named: list[str]) -> None:
    checkpoint = lightning_checkpoint(model16)
    corrupt(checkpoint["state_dict"])
    path = tmp_path / "bad.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as caught:
        load_resunet30(path, CONFIG_16K)
    message = str(caught.value)
    assert str(path) in message
    for fragment in named:
        assert fragment in message


def test_checkpoint_for_the_other_stft_size_is_refused(model16: ResUNet30) -> None:
    with pytest.raises(CheckpointError, match=r"base\.bn0\.weight: checkpoint \(513,\), model \(1025,\)"):
        load_resunet30(model16.state_dict(), CONFIG_32K)


# ---------------------------------------------------------------------------------------------
# Forward pass


@pytest.mark.parametrize("length", [0, 1, 7, 160, 511, 512, 513, 1001, 5119, 16001])
def test_output_length_equals_input_length(model16: ResUNet30, length: int) -> None:
    mixture, condition = noise(2, length)
    with torch.no_grad():
        out = model16(mixture, condition)
    assert out.shape == (2, 1, length) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_short_input_is_separated_as_if_followed_by_silence(model16: ResUNet30) -> None:
    mixture, condition = noise(1, 300)
    with torch.no_grad():
        short = model16(mixture, condition)
        padded = model16(nn.functional.pad(mixture, (0, 513 - 300)), condition)
    torch.testing.assert_close(short, padded[..., :300])


def test_silence_gives_silence_not_nan(model16: ResUNet30) -> None:
    # Zero-power bins would divide by zero in the phase computation without the reference's floor.
    with torch.no_grad():
        out = model16(torch.zeros(2, 1, 4000), noise(2, 1)[1])
    assert torch.equal(out, torch.zeros_like(out))


def test_batched_equals_one_at_a_time(model16: ResUNet30) -> None:
    mixture, condition = noise(3, 8000, seed=1)
    with torch.no_grad():
        batched = model16(mixture, condition)
        single = torch.cat([model16(mixture[i:i + 1], condition[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    # Different conditions give different outputs: the FiLM path is live.
    assert (batched[0] - model16(mixture[:1], condition[1:2]).detach()[0]).abs().max() > 1e-3


def test_autocast_runs_body_in_bf16_and_spectral_math_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    # bf16 convolutions are very slow on CPUs without bf16 units (seconds per 384-channel layer),
    # so this uses the smallest STFT the six-level U-Net accepts; the code path is the same.
    model = ResUNet30(n_fft=128, hop_length=32).eval()
    randomize_weights(model, seed=3)
    seen: dict[str, torch.dtype] = {}
    real_stft, real_istft = torch.stft, torch.istft

    def stft(x, *args, **kwargs):
        seen["stft_in"] = x.dtype
        return real_stft(x, *args, **kwargs)

    def istft(x, *args, **kwargs):
        seen["istft_in"] = x.dtype
        return real_istft(x, *args, **kwargs)

    monkeypatch.setattr(torch, "stft", stft)
    monkeypatch.setattr(torch, "istft", istft)
    model.base.pre_conv.register_forward_hook(lambda m, i, o: seen.__setitem__("pre_conv", o.dtype))
    model.base.after_conv.register_forward_hook(lambda m, i, o: seen.__setitem__("after_conv", o.dtype))
    mixture, condition = noise(2, 1000, seed=2)
    with torch.no_grad():
        exact = model(mixture, condition)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(mixture.bfloat16(), condition)
    assert seen == {"stft_in": torch.float32, "istft_in": torch.complex64,
                    "pre_conv": torch.bfloat16, "after_conv": torch.bfloat16}
    assert mixed.dtype == torch.float32 and mixed.shape == exact.shape
    assert sdr_db(mixed, exact) > 15  # bf16 body with random weights: close, not equal


@pytest.mark.parametrize("fixture", ["resunet30_reference_16k.npz", "resunet30_reference_32k.npz"])
def test_matches_reference_implementation_output(fixture: str) -> None:
    data = np.load(FIXTURES / fixture)
    config = RESUNET30_CONFIGS[str(data["config"])]
    assert (config.n_fft, config.hop_length) == (int(data["n_fft"]), int(data["hop_length"]))
    model = ResUNet30.from_config(config).eval()
    randomize_weights(model, seed=int(data["seed"]))
    reference = torch.from_numpy(data["reference_output"])
    mixture, condition = torch.from_numpy(data["mixture"]), torch.from_numpy(data["condition"])
    with torch.no_grad():
        ours = model(mixture, condition)
        folded = inference_form(model)(mixture, condition)  # what dcase9 infer runs on the CPU
    for output in (ours, folded):
        assert sdr_db(output, reference) > 90  # float32 round-off gives ~115-127 dB
        torch.testing.assert_close(output, reference, rtol=0, atol=1e-5 * reference.abs().max().item())


def test_multichannel_mixture_gives_one_output_per_channel() -> None:
    model = ResUNet30(n_fft=256, hop_length=64, input_channels=2, output_channels=2).eval()
    mixture = 0.1 * torch.randn(3, 2, 1234)
    with torch.no_grad():
        out = model(mixture, torch.randn(3, 512))
    assert out.shape == (3, 2, 1234)
    with pytest.raises(ValueError, match="input_channels must be 1 or equal"):
        ResUNet30(n_fft=256, hop_length=64, input_channels=2, output_channels=1)


# ---------------------------------------------------------------------------------------------
# Inference form (batch norms folded)

SMALL_NET = {"n_fft": 256, "hop_length": 64, "channels": (8, 16, 16, 24, 24, 32)}


def inference_form_snr(model: ResUNet30, batch: int = 2, length: int = 6000) -> float:
    """SNR in dB of the inference form's outputs against the model's own, on noise."""
    mixture, condition = noise(batch, length, seed=3)
    with torch.no_grad():
        plain = model(mixture, condition)
        folded = inference_form(copy.deepcopy(model))(mixture, condition)
    return sdr_db(folded, plain)


def small_trained_like_net(seed: int = 4) -> ResUNet30:
    """A narrow ResUNet30 with random weights and batch-norm statistics far from the identity."""
    model = ResUNet30(**SMALL_NET).eval()
    randomize_weights(model, seed=seed)
    return model


@pytest.mark.parametrize("batch", [1, 3])
def test_inference_form_gives_the_same_outputs(batch: int) -> None:
    assert inference_form_snr(small_trained_like_net(), batch=batch) > 100  # measured about 130 dB


def test_inference_form_of_a_bare_film_resunet() -> None:
    """Any FiLMResUNet (System 3's mask net has no decoder bn2): same outputs."""
    unet = FiLMResUNet(8, 8, channels=(16, 32, 32), pools=((2, 2), (2, 2), (1, 2)), unused_decoder_bn2=False).eval()
    film = FiLMGenerator(512, unet.film_channels())
    randomize_weights(unet, seed=5)
    latent, condition = torch.randn(2, 8, 37, 15), torch.randn(2, 512)
    with torch.no_grad():
        betas = film(condition)
        plain = unet(latent, betas)
        folded = inference_form(copy.deepcopy(unet))(latent, betas)
    assert sdr_db(folded, plain) > 100


def test_inference_form_replaces_every_block_and_keeps_the_rest() -> None:
    model = inference_form(small_trained_like_net())
    base = model.base
    for i in range(6):
        assert isinstance(getattr(base, f"encoder_block{i + 1}").conv_block1, InferenceConvBlockRes)
        assert isinstance(getattr(base, f"decoder_block{i + 1}"), InferenceDecoderBlockRes)
    assert isinstance(base.conv_block7a.conv_block1, InferenceConvBlockRes)
    batch_norms = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms == ["base.bn0"]
    # The folded tensors are derived, never saved: no state dict of this form passes for a checkpoint.
    assert not any(k.endswith(("weight1", "bias1", "scale1", "shift1")) for k in model.state_dict())
    with pytest.raises(RuntimeError, match="cannot be trained"):
        model.train()
    with pytest.raises(ValueError, match="eval mode"):
        inference_form(ResUNet30(**SMALL_NET))


RIGHT_AFFINE = resunet_module.batch_norm_affine


def _affine_without_mean(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.clone()


def _affine_without_variance(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    return bn.weight.clone(), bn.bias - bn.running_mean * bn.weight


def _affine_on_the_wrong_channels(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale, shift = RIGHT_AFFINE(bn)
    return scale.flip(0), shift.flip(0)


@pytest.mark.parametrize("wrong", [_affine_without_mean, _affine_without_variance, _affine_on_the_wrong_channels])
def test_a_wrong_fold_is_caught(wrong, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: folds that forget a statistic or mix up channels fall far below it."""
    monkeypatch.setattr(resunet_module, "batch_norm_affine", wrong)
    assert inference_form_snr(small_trained_like_net()) < 60


# ---------------------------------------------------------------------------------------------
# Reusing the blocks


def test_small_film_resunet_from_the_same_blocks() -> None:
    """A 3-level FiLM ResUNet over an 8-channel latent, as System 3 builds it."""
    unet = FiLMResUNet(8, 8, channels=(16, 32, 32), pools=((2, 2), (2, 2), (1, 2)), unused_decoder_bn2=False)
    film = FiLMGenerator(512, unet.film_channels())
    assert list(unet.film_channels()) == ["encoder_block1", "encoder_block2", "encoder_block3", "conv_block4a",
                                          "decoder_block1", "decoder_block2", "decoder_block3"]
    assert "decoder_block1->beta2" not in film and "decoder_block1->conv_block2->beta2" in film
    latent = torch.randn(2, 8, 37, 15)  # neither axis a multiple of the pooling: padded and cropped
    out = unet(latent, film(torch.randn(2, 512)))
    assert out.shape == (2, 8, 37, 15)
    out.square().mean().backward()
    unused = [n for n, p in [*unet.named_parameters(), *film.named_parameters()] if p.grad is None]
    assert unused == []
