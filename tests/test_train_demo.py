"""The demo's model: its word-level tiny tokenizer, distinct random queries, and reuse of a finished run."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from toolkit.data.demo import SOUND_CLASSES, caption_pool
from toolkit.models.clap import ClapEncoder, load_roberta_tokenizer
from toolkit.models.tiny import MERGES, vocabulary, word_merges, write_tiny_roberta_tokenizer
from toolkit.training.config import assemble_config


def test_plain_tiny_tokenizer_is_unchanged() -> None:
    vocab = vocabulary()
    assert len(vocab) == 284 and vocab["<mask>"] == 283 and vocab["Ġbarking"] == 4 + 256 + 10
    assert word_merges([]) == MERGES


def test_demo_tokenizer_makes_every_caption_word_one_token(tmp_path: Path) -> None:
    tokenizer = load_roberta_tokenizer(write_tiny_roberta_tokenizer(tmp_path / "tok", words_of=caption_pool()))
    tokens = tokenizer.tokenize("Someone's dog barks, growls, and barks again.")
    assert tokens == ["Someone", "'s", "Ġdog", "Ġbarks", ",", "Ġgrowls", ",", "Ġand", "Ġbarks", "Ġagain", "."]
    for caption in caption_pool():
        words = caption.replace(",", " ").replace(".", " ").replace("'s", " ").split()
        assert len([t for t in tokenizer.tokenize(caption) if t.strip("Ġ").isalpha()]) == len(words), caption
    assert tokenizer.tokenize("xylophone")[:2] == ["x", "y"]  # unknown words still tokenize, by bytes
    architecture = assemble_config(preset="demo").query_encoder.architecture
    assert len(tokenizer) <= architecture.text_vocab_size


def test_random_demo_queries_are_distinct(tmp_path: Path) -> None:
    from toolkit.models.tiny import random_clap_model

    spec = assemble_config(preset="demo").query_encoder.architecture.spec()
    tokenizer = load_roberta_tokenizer(write_tiny_roberta_tokenizer(tmp_path / "tok", words_of=caption_pool()))
    captions = [c for sound in SOUND_CLASSES for c in sound.captions]
    embeddings = ClapEncoder(random_clap_model(spec, seed=0), spec.front_end, tokenizer).encode_text(captions)
    similarity = embeddings @ embeddings.T
    off_diagonal = similarity[~torch.eye(len(captions), dtype=torch.bool)]
    assert off_diagonal.mean() < 0.7 and off_diagonal.max() < 0.99
    again = ClapEncoder(random_clap_model(spec, seed=0), spec.front_end, tokenizer).encode_text(captions)
    assert torch.equal(embeddings, again)


def test_demo_model_is_trained_then_reused_or_resumed(demo_root: Path, tmp_path: Path) -> None:
    from tests.test_train_run import TINY_RUN
    from toolkit.api import train_demo_model

    small = {**TINY_RUN, "validation": {"data": None}, "checkpoint": {"every_steps": 1, "last_every_steps": 1},
             "trainer": {**TINY_RUN["trainer"], "max_steps": 2}, "query_encoder": {"tokenizer": "tiny-demo"}}
    train_json = demo_root / "train" / "train.json"
    run = tmp_path / "model"
    first, load = train_demo_model(train_json, run, progress=False, overrides=[small])
    assert first.global_step == 2 and load["checkpoint"] == run / "last.ckpt" and load["trained_now"]
    assert load["system_options"]["channels"] == [4, 8] and load["system_options"]["clap"]["text_hidden_size"] == 64
    again, load = train_demo_model(train_json, run, progress=False, overrides=[small])
    assert again.global_step == 2 and not load["trained_now"]
    assert not (run / "logs" / "version_1").exists()  # reused, not retrained
    shutil.copyfile(run / "checkpoints" / "step=1.ckpt", run / "last.ckpt")  # as if interrupted at step 1
    resumed, _ = train_demo_model(train_json, run, progress=False, overrides=[small])
    assert resumed.global_step == 2 and (run / "logs" / "version_1").exists()
