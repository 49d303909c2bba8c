"""Sources, tokenizer, packing, masking and the determinism of batch k (on prepared data)."""
import gzip
import json

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import prepared_examples, split_documents, tiny_config
from lm_jax import families
from lm_jax.data import masking, packing, prepare, sources, tokenizer
from lm_jax.errors import UserError


def bert_config(tokenizer_dir, **overrides):
  return tiny_config(tokenizer_dir, **{"data.seq_len": 128, "data.max_predictions_per_seq": 20,
                                       **overrides})


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
  return tokenizer.Tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def data(tokenizer_dir, corpus_dir):
  return prepared_examples(bert_config(tokenizer_dir), corpus_dir)


def test_embedded_corpus_holds_out_persuasion():
  train, held_out = sources.embedded_documents("train"), sources.embedded_documents("eval")
  assert len(train) > 200 and len(held_out) == 24  # Persuasion has 24 chapters
  assert "Sir Walter Elliot" in held_out[0]
  assert not any("Sir Walter Elliot" in d for d in train)


def test_tokenizer_special_tokens_and_mask_in_text(tok):
  assert [tok.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  ids = tok.encode(["She was the [MASK] of the two."])[0]
  assert tok.mask_id in ids
  before = ids[ids.index(tok.mask_id) - 1]
  assert tok.id_to_token(before) == "\u2581the"  # the space went with the masked word
  assert tok.decode(tok.encode(["Emma Woodhouse, handsome."])[0]) == "Emma Woodhouse, handsome."


def test_file_sources(tmp_path):
  (tmp_path / "blank.txt").write_text("First doc\nstill first.\n\nSecond doc.\n")
  (tmp_path / "lines.txt.gz").write_bytes(gzip.compress(b"one\ntwo\nthree\n"))
  (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "from json"}) + "\n")
  docs = split_documents(tiny_config(**{"data.files": str(tmp_path / "*")}).data)
  assert docs == ["First doc still first.", "Second doc.", "from json", "one", "two", "three"]


@pytest.mark.parametrize("content,message", [
    (None, "No files match"),
    ('{"txt": 1}\n', "is not a JSON object with a 'text' field"),
])
def test_file_source_errors(tmp_path, content, message):
  if content is not None:
    (tmp_path / "bad.jsonl").write_text(content)
  with pytest.raises(UserError, match=message):
    split_documents(tiny_config(**{"data.files": str(tmp_path / "*.jsonl")}).data)


def test_empty_corpus_is_refused(tmp_path, tokenizer_dir):
  (tmp_path / "empty.txt").write_text("\n\n   \n")
  config = tiny_config(tokenizer_dir, **{"data.files": str(tmp_path / "*.txt")})
  with pytest.raises(UserError, match="The training corpus is empty"):
    prepare.prepare(config, str(tmp_path / "out"), families.FAMILIES["bert"].examples,
                    tokenizer=tokenizer_dir, log=lambda _: None)
  assert not (tmp_path / "out" / "documents" / "manifest.json").exists()


def test_tfds_source_through_data_source():
  cfg = ml_collections.ConfigDict(dict(
      tfds_name="lm1b", tfds_split="train", tfds_eval_split="test", tfds_text_key="text",
      tfds_data_dir="", max_documents=30, files=""))
  with tfds.testing.mock_data(num_examples=50, policy=tfds.testing.MockPolicy.USE_CODE):
    train, held_out = split_documents(cfg, "train"), split_documents(cfg, "eval")
  assert len(train) == 30 and len(held_out) == 30
  assert all(isinstance(d, str) and d for d in train)


def test_pair_format(data, tok):
  seen_labels = set()
  for i in range(200):
    e = data.example(i)
    ids, types, mask = e["input_ids"], e["token_type_ids"], e["attention_mask"]
    n = int(mask.sum())
    assert ids.shape == (128,) and n <= 128 and (mask[:n] == 1).all() and (mask[n:] == 0).all()
    assert (ids[n:] == tok.pad_id).all() and ids[0] == tok.cls_id and ids[n - 1] == tok.sep_id
    seps = np.flatnonzero(ids[:n] == tok.sep_id)
    assert len(seps) == 2
    assert (types[:seps[0] + 1] == 0).all() and (types[seps[0] + 1:n] == 1).all()
    seen_labels.add(int(e["nsp_labels"]))
  assert seen_labels == {0, 1}


def test_is_next_pairs_are_consecutive_text(tok):
  docs = sources.embedded_documents("train")[:60]
  documents = [prepare.decode_document(r, words=False) for r in prepare.piece_records(docs, tok, dict(tokens=0))]
  text = np.concatenate([tokens for _, tokens in documents]).tobytes()
  checked = 0
  for i, record in enumerate(packing.sentence_blocks(documents, 0, 128, tok)):
    _, lengths, tokens = packing.decode_sentence_block(record)
    assert lengths.sum() == len(tokens)
    rng = np.random.default_rng(i)
    a, rest = packing.split_block(lengths, tokens, rng)
    untruncated = len(a) + len(rest) <= 125
    a, b = packing.truncate_pair(a, rest, 125, rng)
    assert len(a) + len(b) <= 125 and len(a) and len(b)
    if untruncated:  # A then B is a span of the corpus
      assert np.concatenate([a, b]).astype(np.int32).tobytes() in text
      checked += 1
  assert checked > 10


def test_nsp_balance_and_mask_statistics(data, tok):
  batch = data.global_batch(0, 512)
  assert abs(batch["nsp_labels"].mean() - 0.5) < 0.07
  w = batch["masked_weights"]
  maskable = (~np.isin(batch["input_ids"], [tok.cls_id, tok.sep_id, tok.pad_id])).sum(-1)
  # ~15% of the non-special tokens, capped at max_predictions_per_seq.
  expected = np.minimum(np.round(maskable * 0.15), 20)
  assert np.abs(w.sum(-1) - expected).max() <= 1
  pos = batch["masked_positions"]
  masked_now = np.take_along_axis(batch["input_ids"], pos, 1)[w > 0]
  original = batch["masked_ids"][w > 0]
  frac_mask = (masked_now == tok.mask_id).mean()
  frac_same = (masked_now == original).mean()
  assert abs(frac_mask - 0.8) < 0.03 and abs(frac_same - 0.1) < 0.03 + 1 / tok.vocab_size
  assert not np.isin(original, list(tok.special_ids)).any()  # never mask [CLS]/[SEP]/[PAD]


def test_a_one_document_corpus_warns_that_nsp_is_trivial(tokenizer_dir, tmp_path):
  text = tmp_path / "one.txt"
  text.write_text(" ".join(sources.embedded_documents("train")[:3]).replace("\n", " "))
  config = bert_config(tokenizer_dir, **{"data.files": str(text), "train.eval_every": 0})
  with pytest.warns(UserWarning, match="is one document, so next-sentence prediction is trivial"):
    data = prepared_examples(config, str(tmp_path / "corpus"))
  assert data.global_batch(0, 16)["nsp_labels"].max() == 0  # what the warning says


def test_whole_word_masking_masks_whole_words(tok):
  rng = np.random.default_rng(0)
  ids = np.array(tok.encode(["Notwithstanding extraordinarily unaccountable circumstances, "
                             "Catherine's imagination wandered incessantly."])[0] * 3, np.int32)
  starts = tok.word_starts()
  for seed in range(20):
    masked, pos, labels, w = masking.mask_tokens(
        ids, np.random.default_rng(seed), vocab_size=tok.vocab_size, mask_id=tok.mask_id,
        special_ids=tok.special_ids, word_starts=starts, mask_prob=0.3, max_predictions=20,
        whole_word=True)
    chosen = np.zeros(len(ids), bool)
    chosen[pos[w > 0]] = True
    word = np.cumsum(starts[ids])  # word number of each piece
    for wd in np.unique(word[chosen]):
      assert chosen[word == wd].all(), "a word was only partly masked"
  del rng


def test_batch_k_is_a_pure_function_of_seed_and_k(tokenizer_dir, corpus_dir, data):
  again = prepared_examples(bert_config(tokenizer_dir), corpus_dir)
  other_seed = prepared_examples(bert_config(tokenizer_dir), corpus_dir, seed=1)
  b7 = data.global_batch(7, 16)
  for k, v in again.global_batch(7, 16).items():
    np.testing.assert_array_equal(v, b7[k])
  assert not np.array_equal(other_seed.global_batch(7, 16)["input_ids"], b7["input_ids"])
  # The Grain iterator from step 7 gives the same batch, and two "hosts" split it.
  first = next(data.batches(16, 7, 9))
  halves = [next(data.batches(16, 7, 9, process_index=p, process_count=2)) for p in (0, 1)]
  for k, v in b7.items():
    np.testing.assert_array_equal(first[k], v)
    np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), v)


def test_epochs_reshuffle(data):
  n = len(data.records)
  order = [data.order[i] for i in range(2 * n)]
  assert sorted(order[:n]) == list(range(n)) and order[:n] != order[n:]
