"""Tiny random stand-ins for AudioLDM's parts, saved in the library formats cvssp/audioldm-s-full-v2 uses.

- `vae/`: a diffusers `AutoencoderKL` with AudioLDM's layout (1 channel in and out, 8 latent channels,
  three down-sampling levels -> 4x in time and frequency) but 4-8 channels instead of 128-512.
- `vocoder/`: a transformers `SpeechT5HifiGan` with AudioLDM's up-sampling (5, 4, 2, 2, 2: 160 samples
  per frame, 16 kHz, 64 mels) and a single small residual kernel per level, initialised wide enough
  (std 0.2) that its output is audible rather than ~1e-9, so training and gain tests see real signals.
- `unet/`, `scheduler/`, `text_encoder/`, `tokenizer/`: the LDM term's parts: a 2-level
  `UNet2DConditionModel` with AudioLDM's conditioning (a 512-d "simple_projection" class embedding,
  concatenated to the time embedding; self-attention only), AudioLDM's DDIM schedule, and a 2-layer
  CLAP text tower with the tiny RoBERTa tokenizer.

All folders are written with `save_pretrained`, so tests load them through the real loading path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_models import tiny_clap_laion_weights
from tests.tiny_roberta_tokenizer import vocabulary, write_tiny_roberta_tokenizer
from dcase9.models.irm_ldm import CHECKPOINT_PREFIX, MaskNet, MaskNetConfig

TINY_VAE_SCALING = 0.75
# A small mask net (the real default is 32-384 wide); five levels as in the real one.
TINY_MASK_NET = {"channels": [4, 8, 8, 8, 8], "pools": [[2, 2], [2, 2], [2, 2], [2, 1], [2, 1]]}


def write_tiny_vae(folder: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(4, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=2, sample_size=256, scaling_factor=TINY_VAE_SCALING)
    vae.save_pretrained(folder)
    return folder


def write_tiny_vocoder(folder: Path, seed: int = 0) -> Path:
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    config = SpeechT5HifiGanConfig(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=32,
                                   upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                                   resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]], normalize_before=False,
                                   initializer_range=0.2)
    SpeechT5HifiGan(config).save_pretrained(folder)
    return folder


def write_tiny_diffusion_prior(root: Path, seed: int = 0) -> Path:
    """unet/, scheduler/, text_encoder/ and tokenizer/ under `root`, as in AudioLDM's pipeline folder."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=8, out_channels=8, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(8, 16), attention_head_dim=4, norm_num_groups=4,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=512,
        class_embeddings_concat=True)
    unet.save_pretrained(root / "unet")
    # AudioLDM's schedule (linear_start/linear_end of its config, "scaled_linear" in diffusers' terms).
    DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                  beta_schedule="scaled_linear").save_pretrained(root / "scheduler")
    text = ClapTextModelWithProjection(ClapTextConfig(
        vocab_size=len(vocabulary()), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, projection_dim=512, pad_token_id=1))
    text.save_pretrained(root / "text_encoder")
    write_tiny_roberta_tokenizer(root / "tokenizer")
    return root


def tiny_mask_net_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return MaskNet(8, MaskNetConfig(**TINY_MASK_NET)).state_dict()


def write_system3_checkpoint(path: Path, *, mask_net: dict[str, torch.Tensor] | None = None,
                             clap: dict[str, torch.Tensor] | None = None) -> Path:
    """A System 3 checkpoint: the mask net under `ss_model.mask_net.`, the tiny CLAP under `query_encoder.model.`."""
    mask_net = mask_net if mask_net is not None else tiny_mask_net_weights()
    clap = clap if clap is not None else tiny_clap_laion_weights()
    state = {CHECKPOINT_PREFIX + k: v for k, v in mask_net.items()}
    state.update({f"query_encoder.model.{k}": v for k, v in clap.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "global_step": 10, "pytorch-lightning_version": "2.6.0", "state_dict": state}, path)
    return path
