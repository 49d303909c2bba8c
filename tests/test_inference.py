"""Inference (lm_jax.load's objects): batching and bucketing, what a str means,
one-sentence refusals, fill-mask in the transformers pipeline's shape, ELMo's
batched embed, and config files found by name. HF byte-level BPE checkpoints
and the inference bench are tests/test_hf_bpe.py's.

Models have random weights, built in-process: the tests are about shapes,
equalities and compile counts, not quality. CPU, float32.
"""
import os

import jax
import numpy as np
import pytest

from conftest import REPO, override, tiny_config
from lm_jax import cli, inference
from lm_jax.data import elmo_vocab, packing, sources, tokenizer as tokenizer_lib
from lm_jax.errors import UserError
from lm_jax.inference import batching, encoder

TOLERANCE = 1e-4
TEXTS = ["Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years.",
         "She was the youngest.", "Mr. Knightley laughed", "", "Why?"]


def sentences(n, split="eval"):
  return [s for d in sources.embedded_documents(split) for s in packing.split_sentences(d)][:n]


class Compiles:
  """Counts XLA compilations while active."""

  def __enter__(self):
    self.count = 0
    self._listener = lambda event, *_, **__: setattr(
        self, "count", self.count + (event == "/jax/core/compile/backend_compile_duration"))
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)


@pytest.fixture(scope="module")
def bert(tokenizer_dir):
  return inference.fresh(tiny_config(tokenizer_dir), tokenizer_lib.load(tokenizer_dir), seed=0)


@pytest.fixture(scope="module")
def gpt(tokenizer_dir):
  from configs import gpt2
  config = override(gpt2.get_config("tiny"), {"model.n_embd": 32, "model.n_positions": 64,
                                               "data.tokenizer": tokenizer_dir})
  return inference.fresh(config, tokenizer_lib.load(tokenizer_dir), seed=1)


def test_bucketing_policy():
  assert [batching.length_bucket(n) for n in (1, 16, 17, 25, 33, 49, 65, 97, 129)] == [
      16, 16, 24, 32, 48, 64, 96, 128, 192]
  assert batching.length_bucket(300, limit=128) == 128
  assert [batching.row_bucket(n, 32) for n in (1, 2, 3, 5, 17, 32)] == [1, 2, 4, 8, 32, 32]
  rows = [[0] * n for n in (3, 40, 7, 20, 9)]
  assert [tuple(g) for g in batching.groups(rows, 2)] == [
      ([1, 3], 2, 48), ([4, 2], 2, 16), ([0], 1, 16)]


def test_a_str_is_one_text_and_batching_changes_nothing(bert):
  alone = [bert.hidden_states(t) for t in TEXTS]
  assert alone[1].shape == (len(bert.token_ids("She was the youngest.")[0]), 64)
  batched = bert.hidden_states(TEXTS)  # sorted by length, padded to 24
  ids, _, mask = bert.encode(TEXTS)
  assert batched.shape == (*ids.shape, 64)
  full = bert(TEXTS)["hidden_states"]  # one padded batch, every head computed
  for i, x in enumerate(alone):
    np.testing.assert_allclose(batched[i, :len(x)], x, atol=1e-5)
    np.testing.assert_allclose(full[i, :len(x)], x, atol=1e-5)
    assert not batched[i, len(x):].any()  # padding is zeros
  vectors = bert.embed(TEXTS)
  assert vectors.shape == (5, 64) and bert.embed(TEXTS[0]).shape == (64,)
  np.testing.assert_allclose(vectors[0], alone[0].mean(0), atol=1e-5)
  np.testing.assert_allclose(bert.embed(TEXTS, pooling="cls")[1], alone[1][0], atol=1e-5)
  unit = bert.embed(TEXTS, normalize=True)
  np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1, atol=1e-5)
  logits = bert.mlm_logits(TEXTS[:2])
  np.testing.assert_allclose(logits[1, :len(alone[1])], bert.mlm_logits(TEXTS[1]), atol=1e-4)
  assert bert.embed(bert.token_ids(TEXTS[1])[0]).shape == (64,)  # a flat id list is one input


def test_no_compile_after_the_first_calls_within_the_buckets(bert):
  rng = np.random.default_rng(0)
  ids = lambda lengths: [rng.integers(5, 8000, n).tolist() for n in lengths]
  # batch_size 4: a (4 rows, 24) batch and a last one of (1, 16), twice with other lengths.
  first, later = ids([20, 17, 12, 10, 3]), ids([24, 23, 18, 17, 1])
  masked = [[[bert.tokenizer.mask_id, *r[1:]] for r in rows] for rows in (first, later)]
  calls = [lambda x: bert.hidden_states(x, batch_size=4), lambda x: bert.embed(x, batch_size=4),
           lambda x: bert.fill_mask(x, batch_size=4)]
  for call, inputs in zip(calls, (first, first, masked[0])):
    call(inputs)
  with Compiles() as compiles:
    for call, inputs in zip(calls, (later, later, masked[1])):
      call(inputs)
    bert.embed(later[-1], batch_size=4)  # one input: (1, 16) again
  assert compiles.count == 0
  with Compiles() as compiles:  # the counter counts: a new length bucket (48) compiles once
    bert.hidden_states(ids([40]), batch_size=4)
    bert.hidden_states(ids([37]), batch_size=4)
  assert compiles.count == 1


def test_fill_mask_is_the_transformers_pipelines_shape(bert):
  text = "She was the [MASK] of the two daughters."
  top = bert.fill_mask(text, top_k=3)
  assert [sorted(c) for c in top] == [["score", "sequence", "token", "token_str"]] * 3
  assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]
  row = bert.token_ids(text)[0]
  position = row.index(bert.tokenizer.mask_id)
  probs = encoder.softmax(bert.mlm_logits(text)[position])  # the full-vocabulary path agrees
  assert top[0]["token"] == int(probs.argmax())
  assert abs(top[0]["score"] - probs.max()) < 1e-5
  for c in top:
    assert c["token_str"] == bert.tokenizer.decode([c["token"]]) and "\u2581" not in c["token_str"]
    assert c["sequence"].startswith("She was the") and "[MASK]" not in c["sequence"]
  two = bert.fill_mask("[MASK] was the [MASK].", top_k=2)
  assert len(two) == 2 and all(len(c) == 2 for c in two)
  assert "[MASK]" in two[0][0]["sequence"]  # the other mask stays in each filled sequence
  many = bert.fill_mask([text, "[MASK] was the [MASK]."], top_k=2)
  assert many[0][0]["token"] == top[0]["token"] and len(many[1]) == 2
  with pytest.raises(UserError, match="The input has no mask token; write \\[MASK\\]"):
    bert.fill_mask("No mask here.")


@pytest.mark.parametrize("call, message", [
    (lambda m: m.hidden_states([]), "No input was given"),
    (lambda m: m.mlm_logits([]), "No input was given"),
    (lambda m: m.embed([[]]), "Input 0 has no tokens"),
    (lambda m: m.embed([]), "No input was given"),
    (lambda m: m.embed([[5, -1]]), "the token id -1, outside the vocabulary \\(0..7999\\)"),
    (lambda m: m.embed([[5], [8000]]), "Input 1 has the token id 8000"),
    (lambda m: m.embed(["a", [5]]), "Input 1 is a list among texts"),
    (lambda m: m.embed(5), "; got int"),
    (lambda m: m.embed("word " * 100), "has 102 tokens but the model takes at most 64; .*"
                                       "truncation=True"),
    (lambda m: m.embed(TEXTS, batch_size=0), "batch_size=0"),
    (lambda m: m.embed(TEXTS, pooling="max"), "pooling='max'"),
    (lambda m: m.fill_mask("[MASK]", top_k=0), "top_k=0"),
])
def test_bad_inputs_are_one_sentence(bert, call, message):
  with pytest.raises(UserError, match=message):
    call(bert)


def test_truncation_keeps_the_limit_and_the_sep(bert):
  long = "word " * 100
  row = bert.token_ids(long, truncation=True)[0]
  assert len(row) == 64 and row[0] == bert.tokenizer.cls_id and row[-1] == bert.tokenizer.sep_id
  assert bert.hidden_states(long, truncation=True).shape == (64, 64)


def test_causal_lm_batches_and_a_str_is_one_prompt(gpt):
  greedy = gpt.generate(TEXTS, max_new_tokens=4)
  assert len(greedy) == 5 and greedy == gpt.generate(TEXTS, max_new_tokens=4, batch_size=1)
  assert greedy[1] == gpt.generate(TEXTS[1], max_new_tokens=4)  # a str: one prompt, a str back
  sampled = gpt.generate(TEXTS, max_new_tokens=4, temperature=1.0, seed=7)
  assert sampled == gpt.generate(TEXTS, max_new_tokens=4, temperature=1.0, seed=7, batch_size=1)
  logits = gpt.logits(TEXTS)
  for i, text in enumerate(TEXTS[:2]):
    one = gpt.logits(text)
    np.testing.assert_allclose(logits[i, :len(one)], one, atol=1e-4)
  with pytest.raises(UserError, match="needs 70 positions but the model has 64"):
    gpt.generate([[5] * 60], max_new_tokens=10)
  assert len(gpt.generate([5] * 70, max_new_tokens=1, truncation=True)) == 1


def test_elmo_embed_is_batched_and_independent_of_batching(tokenizer_dir):
  from configs import elmo
  words = list(elmo_vocab.SPECIALS) + sorted({w for s in sentences(200) for w in s.split()})
  config = override(elmo.get_config("tiny"), {"model.vocab_size": len(words),
                                              "model.lstm_dim": 64, "model.projection_dim": 16})
  vocab = elmo_vocab.Vocabulary(words, config.model.max_characters_per_token)
  model = inference.fresh(config, vocab)
  texts = sentences(5)
  out = model.embed(texts, batch_size=4)
  i = min(range(5), key=lambda j: len(texts[j].split()))  # alone, it has its batch's shape
  one = model.embed(texts[i])
  n = len(one["mix"])
  assert out["layers"].shape[:2] == (5, 3) and out["mask"][i].sum() == n
  np.testing.assert_allclose(out["mix"][i, :n], one["mix"], atol=1e-5)
  np.testing.assert_allclose(out["layers"][i, :, :n], one["layers"], atol=1e-5)
  assert not out["mix"][i, n:].any()
  with pytest.raises(UserError, match="Sentence 1 has no words"):
    model.embed(["Emma.", ""])


def test_config_files_resolve_by_name_outside_the_checkout(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  shipped = os.path.join(REPO, "configs", "bert_base.py")
  assert os.path.samefile(cli.config_path("bert_base.py"), shipped)
  assert os.path.samefile(cli.config_path("configs/bert_base.py"), shipped)
  (tmp_path / "bert_base.py").write_text("# the user's own\n")
  assert cli.config_path("bert_base.py") == "bert_base.py"  # a file in the cwd comes first
  assert "gpt2.py" in cli.shipped_configs()
  problem = cli._config_file_problem(["--config=nope.py:tiny"], "config")
  assert "does not exist" in problem and "bert_base.py" in problem
