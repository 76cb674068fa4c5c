"""CLAP on transformers' ClapModel: laion weights, key conversion, and equality with the reference.

The regression fixture `fixtures/clap_tiny_laion.pt` is a tiny random laion CLAP written by the
reference laion code vendored in github.com/Audio-AGI/dcase2024_task9_baseline (commit
b9ebf346ae0b9e90b7d5c2143686e909c54a72f0), and `fixtures/clap_tiny_laion_expected.pt` holds that
code's text and audio embeddings for fixed inputs; `fixtures/make_clap_laion_fixture.py` made both
(its docstring gives the environment). `TINY_FIXTURE_SPEC` below describes the same architecture.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny_roberta_tokenizer import vocabulary, write_tiny_roberta_tokenizer
from dcase9.errors import CheckpointError
from dcase9.models.clap import (
    ClapArchitecture,
    ClapEncoder,
    LogMelSettings,
    RobertaBpe,
    build_clap_model,
    clip_starts,
    find_laion_prefix,
    laion_clap_spec,
    laion_to_transformers,
    load_roberta_bpe,
    load_roberta_tokenizer,
    read_laion_clap_weights,
    repeat_pad,
    slaney_mel_filterbank,
    transformers_to_laion,
)

FIXTURES = Path(__file__).parent / "fixtures"
LAION_FIXTURE = FIXTURES / "clap_tiny_laion.pt"
EXPECTED = FIXTURES / "clap_tiny_laion_expected.pt"
TOLERANCE = 1e-5  # measured differences are ~1e-7 (float32 round-off)


def tiny_architecture() -> ClapArchitecture:
    """`tiny_spec()` as a typed configuration section (what system configurations hold)."""
    return ClapArchitecture(text_vocab_size=len(vocabulary()), text_hidden_size=16, text_layers=2, text_heads=2,
                            text_intermediate_size=32, audio_embed_dim=8, audio_depths=[2, 2], audio_heads=[1, 2],
                            audio_window_size=4, spec_size=64, projection_dim=12, sample_rate=16_000,
                            clip_samples=16_000, window_size=256, hop_size=80, n_mels=16, fmin=50.0, fmax=7_000.0)


def tiny_spec(**front_end_changes):
    """The architecture of the fixture (see make_clap_laion_fixture.py, size 'tiny')."""
    front_end = LogMelSettings(sample_rate=16_000, clip_samples=16_000, window_size=256, hop_size=80,
                               n_mels=16, fmin=50.0, fmax=7_000.0)
    front_end = LogMelSettings(**{**front_end.__dict__, **front_end_changes})
    return laion_clap_spec(
        front_end=front_end, text_vocab_size=len(vocabulary()), text_hidden_size=16, text_layers=2,
        text_heads=2, text_intermediate_size=32, audio_embed_dim=8, audio_depths=(2, 2), audio_heads=(1, 2),
        audio_window_size=4, spec_size=64, projection_dim=12)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return write_tiny_roberta_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(EXPECTED, weights_only=True)


@pytest.fixture(scope="module")
def encoder(tokenizer_dir) -> ClapEncoder:
    return ClapEncoder.from_laion_checkpoint(LAION_FIXTURE, spec=tiny_spec(), tokenizer=tokenizer_dir)


def laion_fixture_weights() -> dict[str, torch.Tensor]:
    return read_laion_clap_weights(LAION_FIXTURE)


# ---------------------------------------------------------------------------------------------
# Equality with the reference laion code
# ---------------------------------------------------------------------------------------------

def test_text_embeddings_equal_the_reference(encoder, expected):
    ours = encoder.encode_text(expected["texts"])
    assert ours.shape == expected["text_embeds"].shape == (3, 12)
    assert torch.allclose(ours, expected["text_embeds"], atol=TOLERANCE, rtol=0)
    # Our tokenizer call gives the reference's ids when padded the reference's way (to 512) ...
    padded = encoder.tokenizer(expected["texts"], padding="max_length", truncation=True, max_length=512,
                               return_tensors="pt")
    assert torch.equal(padded["input_ids"], expected["input_ids"])
    assert torch.equal(padded["attention_mask"], expected["attention_mask"])
    # ... and the reference's 512-padded ids give the same embeddings as our padding to the longest.
    assert torch.allclose(encoder.embed_tokens(expected["input_ids"], expected["attention_mask"]), ours,
                          atol=TOLERANCE, rtol=0)


def test_long_text_is_truncated_at_512_tokens(encoder, expected):
    long_text = expected["texts"][2]
    tokens = encoder.tokenizer([long_text], truncation=True, max_length=512)["input_ids"][0]
    assert len(encoder.tokenizer([long_text])["input_ids"][0]) > 512 and len(tokens) == 512


@pytest.mark.parametrize("index", [0, 1, 2], ids=["one clip", "0.37 clip (repeatpad)", "97 samples"])
def test_audio_embeddings_equal_the_reference(encoder, expected, index):
    waveform = expected["waveforms"][index]
    ours = encoder.encode_audio(waveform[None])
    assert ours.shape == (1, 12)
    assert torch.allclose(ours[0], expected["audio_embeds"][index], atol=TOLERANCE, rtol=0)


def test_mel_filterbank_equals_the_checkpoints_librosa_filters():
    stored = laion_fixture_weights()["audio_branch.logmel_extractor.melW"]
    ours = slaney_mel_filterbank(16_000, 256, 16, 50.0, 7_000.0)
    assert ours.shape == stored.shape == (129, 16)
    assert float((ours - stored).abs().max()) < 1e-8


def test_text_tower_alone_gives_the_same_text_embeddings(tokenizer_dir, encoder, expected):
    """Text-queried systems build only the text tower (our plain-PyTorch RoBERTa): same keys, and
    bit for bit the embeddings of transformers' ClapModel, padding and truncation included; no audio
    weights needed."""
    laion = laion_fixture_weights()
    text_only = {k: v for k, v in laion.items() if k.startswith(("text_branch.", "text_projection."))}
    tokenizer = load_roberta_tokenizer(tokenizer_dir)
    for weights in (laion, text_only):
        tower = ClapEncoder.from_laion_weights(weights, tokenizer=tokenizer, spec=tiny_spec(), towers="text")
        assert not tower.has_audio_tower and encoder.has_audio_tower
        assert set(tower.model.state_dict()) == {k for k in encoder.model.state_dict()
                                                 if k.startswith(("text_model.", "text_projection."))}
        assert torch.equal(tower.encode_text(expected["texts"]), encoder.encode_text(expected["texts"]))
        with pytest.raises(ValueError, match="text tower only"):
            tower.encode_audio(expected["waveforms"][0][None])
    with pytest.raises(CheckpointError, match="missing key.*text_model.pooler"):
        ClapEncoder.from_laion_weights({k: v for k, v in text_only.items() if "pooler" not in k},
                                       tokenizer=tokenizer, spec=tiny_spec(), towers="text")


def test_text_tower_from_an_architecture_needs_no_transformers(tokenizer_dir, encoder, expected):
    """What text-queried systems run: the tower from a `ClapArchitecture` and the tokenizer on the
    `tokenizers` library alone give the same embeddings as transformers' ClapModel and tokenizer..."""
    tower = ClapEncoder.from_laion_weights(laion_fixture_weights(), tokenizer=load_roberta_bpe(tokenizer_dir),
                                           spec=tiny_architecture(), towers="text")
    assert isinstance(tower.tokenizer, RobertaBpe) and tower.embedding_dim == 12
    assert torch.equal(tower.encode_text(expected["texts"]), encoder.encode_text(expected["texts"]))
    with pytest.raises(CheckpointError, match="other front-end settings"):  # the stored front end is still checked
        ClapEncoder.from_laion_weights(laion_fixture_weights(), tokenizer=load_roberta_bpe(tokenizer_dir),
                                       spec=tiny_architecture().model_copy(update={"fmax": 6_000.0}), towers="text")


def test_text_tower_from_an_architecture_imports_no_transformers(tokenizer_dir):
    """... and import neither transformers (about 1 s of start-up with its tokenizer and configuration,
    3 s more with its modelling code) nor torch._dynamo (pulled in by a normal initialisation on the
    meta device) or the symbolic-shapes machinery (by arange on the meta device)."""
    code = ("import sys\n"
            "from tests.test_clap import LAION_FIXTURE, tiny_architecture\n"
            "from dcase9.models.clap import ClapEncoder, load_roberta_bpe, read_laion_clap_weights\n"
            "tower = ClapEncoder.from_laion_weights(read_laion_clap_weights(LAION_FIXTURE), spec=tiny_architecture(),\n"
            "                                      tokenizer=load_roberta_bpe(sys.argv[1]), towers='text')\n"
            "tower.encode_text(['a dog barks'])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('transformers', 'torch._dynamo',\n"
            "      'torch.fx.experimental.symbolic_shapes'))))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tokenizer_dir)], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]", result.stdout


# ---------------------------------------------------------------------------------------------
# Where the weights come from
# ---------------------------------------------------------------------------------------------

def test_lightning_checkpoint_gives_the_same_model(tmp_path, encoder, tokenizer_dir, expected):
    laion = laion_fixture_weights()
    state = {f"query_encoder.model.{k}": v for k, v in laion.items()}
    state.update({"ss_model.base.bn0.weight": torch.ones(513), "ss_model.film.x.weight": torch.zeros(3, 12)})
    path = tmp_path / "baseline.ckpt"
    torch.save({"epoch": 3, "global_step": 100, "state_dict": state,
                "hyper_parameters": {"learning_rate": 1e-3}}, path)
    assert find_laion_prefix(state) == "query_encoder.model."
    for prefix in (None, "query_encoder.model."):
        loaded = ClapEncoder.from_laion_checkpoint(path, spec=tiny_spec(), tokenizer=tokenizer_dir, prefix=prefix)
        assert torch.equal(loaded.encode_text(expected["texts"][:2]), encoder.encode_text(expected["texts"][:2]))


def test_laion_file_layout_is_read_without_trust(tmp_path, tokenizer_dir, expected):
    """laion's released files hold numpy scalars next to 'state_dict'; reading must not run pickled code."""
    checkpoint = torch.load(LAION_FIXTURE, weights_only=True)
    assert set(checkpoint) == {"epoch", "state_dict"}
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])
    checkpoint["best_score"] = np.float64(0.8998)
    path = tmp_path / "with_numpy.pt"
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="numpy"):
        loaded = ClapEncoder.from_laion_checkpoint(path, spec=tiny_spec(), tokenizer=tokenizer_dir)
    assert torch.allclose(loaded.encode_text(expected["texts"][:1]), expected["text_embeds"][:1],
                          atol=TOLERANCE, rtol=0)


def test_random_model_saved_in_laion_layout_loads_back(tmp_path, tokenizer_dir):
    """A random ClapModel written as laion's training code would write it comes back unchanged."""
    spec = tiny_spec()
    torch.manual_seed(3)
    original = build_clap_model(spec)
    laion = transformers_to_laion(original.state_dict())
    fe = spec.front_end
    n_freqs = fe.window_size // 2 + 1
    laion.update({  # what laion files carry besides the ClapModel weights
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.randn(n_freqs, 1, fe.window_size),
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight": torch.randn(n_freqs, 1, fe.window_size),
        "audio_branch.logmel_extractor.melW": slaney_mel_filterbank(
            fe.sample_rate, fe.window_size, fe.n_mels, fe.fmin, fe.fmax),
        "audio_branch.layers.0.blocks.1.attn_mask": torch.zeros(16, 16, 16),
        "audio_branch.tscam_conv.weight": torch.randn(3, 16, 2, 3), "audio_branch.tscam_conv.bias": torch.randn(3),
        "audio_branch.head.weight": torch.randn(3, 3), "audio_branch.head.bias": torch.randn(3),
        "text_transform.sequential.0.weight": torch.randn(12, 12),
        "audio_transform.sequential.3.bias": torch.randn(12),
        "text_branch.embeddings.position_ids": torch.arange(514)[None],
    })
    path = tmp_path / "random_laion.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in laion.items()}}, path)
    encoder = ClapEncoder.from_laion_checkpoint(path, spec=spec, tokenizer=tokenizer_dir)

    loaded = encoder.model.state_dict()
    assert loaded.keys() == original.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in original.state_dict().items())
    text = encoder.encode_text(["a dog barking", "rain", "the piano"])
    audio = encoder.encode_audio(torch.randn(2, 16_000) * 0.1)
    assert text.shape == (3, 12) and audio.shape == (2, 12)
    for embeddings in (text, audio):
        assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(embeddings)), atol=1e-6)
        assert not embeddings.requires_grad


def test_conversion_round_trip():
    laion = laion_fixture_weights()
    converted = laion_to_transformers(laion)
    assert any(k.endswith("attention.self.query.weight") for k in converted)
    assert not any("qkv" in k or k.startswith(("text_branch", "audio_branch")) for k in converted)
    back = transformers_to_laion(converted)
    dropped = set(laion) - set(back)
    assert {re.sub(r"\d+", "N", k) for k in dropped} == {
        "text_branch.embeddings.position_ids",
        "audio_branch.layers.N.blocks.N.attn_mask",
        "audio_branch.spectrogram_extractor.stft.conv_real.weight",
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight",
        "audio_branch.logmel_extractor.melW",
        "audio_branch.tscam_conv.weight", "audio_branch.tscam_conv.bias",
        "audio_branch.head.weight", "audio_branch.head.bias",
        "text_transform.sequential.N.weight", "text_transform.sequential.N.bias",
        "audio_transform.sequential.N.weight", "audio_transform.sequential.N.bias",
    }
    assert back.keys() == set(laion) - dropped
    assert all(torch.equal(back[k], laion[k]) for k in back)


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------

def save_laion(tmp_path: Path, laion: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "edited.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in laion.items()}}, path)
    return path


def test_miskeyed_checkpoint_is_refused_naming_the_keys(tmp_path, tokenizer_dir):
    laion = laion_fixture_weights()
    laion["audio_branch.layers.0.blocks.0.mlp.fc9.weight"] = laion.pop("audio_branch.layers.0.blocks.0.mlp.fc1.weight")
    laion["audio_branch.patch_embed.mel_conv2d.weight"] = torch.zeros(8, 1, 4, 12)  # a fusion model's key
    with pytest.raises(CheckpointError) as error:
        ClapEncoder.from_laion_checkpoint(save_laion(tmp_path, laion), spec=tiny_spec(), tokenizer=tokenizer_dir)
    message = str(error.value)
    assert "audio_branch.layers.0.blocks.0.mlp.fc9.weight" in message
    assert "audio_branch.patch_embed.mel_conv2d.weight" in message
    assert "audio_model.audio_encoder.layers.0.blocks.0.intermediate.dense.weight" in message  # missing


def test_misshaped_checkpoint_is_refused(tmp_path, tokenizer_dir):
    laion = laion_fixture_weights()
    laion["text_projection.2.weight"] = torch.zeros(12, 13)
    with pytest.raises(CheckpointError, match=r"text_projection\.linear2\.weight: checkpoint \(12, 13\)"):
        ClapEncoder.from_laion_checkpoint(save_laion(tmp_path, laion), spec=tiny_spec(), tokenizer=tokenizer_dir)


def test_checkpoint_for_another_front_end_is_refused(tokenizer_dir):
    with pytest.raises(CheckpointError, match="mel filters differ"):
        ClapEncoder.from_laion_checkpoint(LAION_FIXTURE, spec=tiny_spec(fmax=6_000.0), tokenizer=tokenizer_dir)
    with pytest.raises(CheckpointError, match="n_fft=256"):
        ClapEncoder.from_laion_checkpoint(LAION_FIXTURE, spec=tiny_spec(window_size=512), tokenizer=tokenizer_dir)


def test_file_without_clap_weights_is_refused(tmp_path):
    path = tmp_path / "separator_only.ckpt"
    torch.save({"state_dict": {"ss_model.base.bn0.weight": torch.ones(3)}}, path)
    with pytest.raises(CheckpointError, match="no laion CLAP weights found"):
        read_laion_clap_weights(path)


def test_missing_tokenizer_offline_says_what_to_download(monkeypatch):
    with pytest.raises(CheckpointError) as error:
        load_roberta_tokenizer("dcase9-tests/no-such-tokenizer", offline=True)
    message = str(error.value)
    assert "offline" in message and "hf download dcase9-tests/no-such-tokenizer vocab.json merges.txt" in message
    assert "--weight roberta-base-tokenizer=DIR" in message and "--checkpoint" not in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="downloads are off"):
        load_roberta_tokenizer("dcase9-tests/no-such-tokenizer")


def test_slow_tokenizer_files_give_a_fast_tokenizer_checked_against_the_slow_algorithm(tmp_path, monkeypatch):
    from dcase9.models import roberta_bpe
    from dcase9.models.roberta_bpe import SlowRobertaBpe, check_against_slow_bpe

    folder = write_tiny_roberta_tokenizer(tmp_path / "slow", words_of=["a zebra quacks"])
    assert not (folder / "tokenizer.json").exists()
    tokenizer = load_roberta_tokenizer(folder)
    slow = SlowRobertaBpe(folder)
    # The slow algorithm by hand: "<s>", "a", then " zebra" is one token (merges for the words above), "</s>".
    vocab = json.loads((folder / "vocab.json").read_text())
    assert slow.ids("a zebra") == [0, vocab["a"], vocab["\u0120zebra"], 2]
    assert tokenizer("a zebra")["input_ids"] == slow.ids("a zebra")
    # A tokenizer that splits differently is refused, naming the folder and the text.
    other = load_roberta_tokenizer(write_tiny_roberta_tokenizer(tmp_path / "other"))
    for wrong in (other, load_roberta_bpe(tmp_path / "other")):
        with pytest.raises(CheckpointError,
                           match="slow.*does not give the ids of RoBERTa's slow tokenizer for 'a zebra'"):
            check_against_slow_bpe(wrong, folder, texts=("a zebra",))
    # Both loaders run that check when the folder has no tokenizer.json ...
    calls = []
    monkeypatch.setattr(roberta_bpe, "check_against_slow_bpe", lambda tok, where: calls.append(where))
    load_roberta_tokenizer(folder)
    load_roberta_bpe(folder)
    assert calls == [folder, folder]
    # ... and trust a tokenizer.json (the fast tokenizer's own file) when there is one.
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    load_roberta_tokenizer(folder)
    load_roberta_bpe(folder)
    assert calls == [folder, folder]


@pytest.mark.parametrize("with_tokenizer_json", [False, True])
def test_roberta_bpe_gives_the_ids_of_transformers_tokenizer(tmp_path, with_tokenizer_json):
    """RobertaBpe (the `tokenizers` library alone) against transformers' RobertaTokenizerFast on the same
    folder: the same ids and masks for captions, special tokens written as text, odd spacing,
    non-Latin text, an empty caption and one beyond 512 tokens (truncated), in one padded batch."""
    from dcase9.models.roberta_bpe import PROBE_TEXTS

    folder = write_tiny_roberta_tokenizer(tmp_path / "tok", words_of=["a dog barks", "rain falls on the roof"])
    theirs = load_roberta_tokenizer(folder)
    if with_tokenizer_json:
        theirs.backend_tokenizer.save(str(folder / "tokenizer.json"))
        theirs = load_roberta_tokenizer(folder)
    ours = load_roberta_bpe(folder)
    texts = [*PROBE_TEXTS, "a dog barks", "a <mask> barks", "<s>rain</s>", "<pad> <unk>", "", " ",
             "rain falls on the roof " * 120]
    expected = theirs(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    got = ours(texts)
    assert got["input_ids"].shape == expected["input_ids"].shape and got["input_ids"].shape[1] == 512
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])
    assert len(ours) == len(theirs)
    for text in texts:
        assert ours.ids(text) == theirs(text)["input_ids"], text
    assert torch.equal(ours(texts[:2], max_length=8)["input_ids"],
                       theirs(texts[:2], padding=True, truncation=True, max_length=8, return_tensors="pt")["input_ids"])
    with pytest.raises(ValueError, match="load_roberta_tokenizer"):
        ours("a single string")
    with pytest.raises(ValueError, match="load_roberta_tokenizer"):
        ours(texts, padding="max_length")


def test_tokenizer_folder_without_merges_is_refused(tmp_path):
    folder = write_tiny_roberta_tokenizer(tmp_path / "tok")
    (folder / "merges.txt").unlink()
    with pytest.raises(CheckpointError, match="lacks merges.txt"):
        load_roberta_tokenizer(folder)


# ---------------------------------------------------------------------------------------------
# Input preparation and inference behaviour
# ---------------------------------------------------------------------------------------------

def test_repeat_pad_tiles_whole_copies_then_zero_pads():
    x = torch.arange(1.0, 4.0)[None]  # 3 samples
    assert repeat_pad(x, 10).tolist() == [[1, 2, 3, 1, 2, 3, 1, 2, 3, 0]]
    assert repeat_pad(x, 3) is x


def test_clip_starts_cover_the_signal_with_the_last_clip_at_the_end():
    assert clip_starts(100, 100) == [0]
    assert clip_starts(40, 100) == [0]
    assert clip_starts(250, 100) == [0, 100, 150]
    assert clip_starts(300, 100) == [0, 100, 200]


def test_long_audio_is_the_mean_of_its_clips(encoder):
    torch.manual_seed(0)
    waveforms = torch.randn(2, 40_000) * 0.1  # 2.5 clips
    clips = [waveforms[:, s:s + 16_000] for s in (0, 16_000, 24_000)]
    per_clip = torch.stack([encoder.embed_clips(c) for c in clips], dim=1)
    expected = torch.nn.functional.normalize(per_clip.mean(dim=1), dim=-1)
    assert torch.allclose(encoder.encode_audio(waveforms, batch_size=4), expected, atol=1e-6)


def test_batching_does_not_change_embeddings(encoder, expected):
    texts = expected["texts"]
    assert torch.allclose(encoder.encode_text(texts, batch_size=1), encoder.encode_text(texts), atol=1e-6)
    waveforms = torch.stack([expected["waveforms"][0], expected["waveforms"][0].flip(0)])
    together = encoder.encode_audio(waveforms)
    alone = torch.cat([encoder.encode_audio(w[None]) for w in waveforms])
    assert torch.allclose(together, alone, atol=1e-6)
    assert encoder.encode_text([]).shape == (0, 12)


def test_encoder_stays_frozen_in_eval_mode(encoder):
    encoder.train()
    assert not encoder.training and not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="batch, samples"):
        encoder.encode_audio(torch.zeros(16_000))
    with pytest.raises(TypeError, match="list of texts"):
        encoder.encode_text("a dog")


def test_music_speech_audioset_architecture():
    spec = laion_clap_spec()
    text, audio = spec.model.text_config, spec.model.audio_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size, text.max_position_embeddings) == \
        (768, 12, 50265, 514)
    assert text.layer_norm_eps == 1e-5 and text.hidden_act == "gelu"
    assert (audio.patch_embeds_hidden_size, list(audio.depths), audio.hidden_size) == (128, [2, 2, 12, 2], 1024)
    assert (audio.spec_size, audio.num_mel_bins, audio.window_size) == (256, 64, 8)
    assert spec.model.projection_dim == 512 and text.projection_hidden_act == audio.projection_hidden_act == "relu"
    fe = spec.front_end
    assert (fe.sample_rate, fe.clip_samples, fe.window_size, fe.hop_size, fe.n_mels, fe.fmin, fe.fmax) == \
        (48_000, 480_000, 1024, 480, 64, 50.0, 14_000.0)
    assert fe.n_frames == 1001 <= 256 * 4
    with torch.device("meta"):
        model = build_clap_model(spec)
    assert model.audio_projection.linear1.in_features == 1024 and model.text_projection.linear1.in_features == 768
    # Counted in a full-size file written by the reference code, without the keys we drop.
    assert sum(p.numel() for p in model.parameters()) == 193_913_882
    assert sum(p.numel() for p in model.text_model.parameters()) == 124_645_632  # roberta-base
