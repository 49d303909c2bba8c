"""ELMo: character encoding, vocabulary, the LSTM scan, sampled softmax, stream
batches, training (falling perplexities, exact resume with the carried LSTM
state), export, and equality with LTG's simple_elmo on the exported files."""
import fcntl
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lm_jax
from conftest import REPO, override, prepared_examples
from lm_jax import families, train
from lm_jax.data import elmo_vocab
from lm_jax.errors import UserError
from lm_jax.models import elmo
from lm_jax.objectives import sampled_softmax

# simple_elmo 0.9.2 on current TensorFlow (shared/formats/bilm-elmo-hdf5.md, recipe A),
# in its own virtualenv so lm_jax's stays TensorFlow-free; created once and reused.
SIMPLE_ELMO_VENV = os.environ.get(
    "LM_JAX_SIMPLE_ELMO_VENV", os.path.expanduser("~/.cache/lm_jax/simple_elmo-0.9.2-tf2.21"))
SIMPLE_ELMO_PACKAGES = (["simple-elmo==0.9.2", "tensorflow-cpu==2.21.0"],
                        ["--no-deps", "tf-keras==2.21.0"])


def elmo_config(**overrides):
  """configs/elmo.py:tiny, smaller still (a step takes milliseconds on CPU)."""
  from configs import elmo as elmo_configs
  c = elmo_configs.get_config("tiny")
  c.model.update(vocab_size=2000, max_characters_per_token=20, char_embedding_dim=8,
                 filters=[[1, 8], [2, 8], [3, 16]], n_highway=2, projection_dim=16, lstm_dim=48,
                 n_negative_samples=256)
  c.data.update(seq_len=10)
  c.train.update(steps=60, batch_size=16, learning_rate=3e-3, warmup_steps=5, log_every=1,
                 eval_every=30, eval_steps=2, checkpoint_every=30)
  return override(c, overrides)


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------
# Characters and vocabulary
# ---------------------------------------------------------------------------

def test_char_encoding_is_bilm_tfs():
  pad = elmo_vocab.PAD_CHAR
  np.testing.assert_array_equal(elmo_vocab.token_chars("ab", 6), [258, 97, 98, 259, pad, pad])
  np.testing.assert_array_equal(elmo_vocab.token_chars("<S>", 5), [258, 256, 259, pad, pad])
  np.testing.assert_array_equal(elmo_vocab.token_chars("</S>", 5), [258, 257, 259, pad, pad])
  np.testing.assert_array_equal(elmo_vocab.token_chars("é", 5), [258, 0xC3, 0xA9, 259, pad])
  np.testing.assert_array_equal(elmo_vocab.token_chars("abcdef", 5), [258, 97, 98, 99, 259])
  vocab = elmo_vocab.Vocabulary(["<S>", "</S>", "<UNK>", "ab"], 6)
  np.testing.assert_array_equal(vocab.chars(["ab", "<S>"])[:, :3], [[258, 97, 98], [258, 256, 259]])
  np.testing.assert_array_equal(vocab.ids(["ab", "zz", "</S>"]), [3, 2, 1])


def test_vocabulary_is_frequency_sorted_with_specials_first(tmp_path):
  sentences = [["b", "a", "b"], ["c", "b", "a", "<S>"], ["d"]]
  vocab = elmo_vocab.build(sentences, 5, 50)
  assert vocab.words == ["<S>", "</S>", "<UNK>", "b", "a"]
  vocab.save(str(tmp_path))
  assert open(tmp_path / "vocab.txt").read().split("\n")[:5] == vocab.words
  assert elmo_vocab.read(str(tmp_path), 50).words == vocab.words
  (tmp_path / "vocab.txt").write_text("the\n<S>\n</S>\n<UNK>\n")
  with pytest.raises(UserError, match="must start with <S>, </S>, <UNK>"):
    elmo_vocab.read(str(tmp_path), 50)


def test_sentences_of_embedded_corpus_and_tokenised_files():
  raw = elmo_vocab.tokenized_sentences(["Emma was rich. She, too, was clever!"], False)
  assert raw == [["Emma", "was", "rich", "."], ["She", ",", "too", ",", "was", "clever", "!"]]
  lines = elmo_vocab.tokenized_sentences(["Mr. Smith came .\nHe left ."], True)
  assert lines == [["Mr.", "Smith", "came", "."], ["He", "left", "."]]


def test_stream_batches_continue_row_by_row_and_read_sentences_backwards(tmp_path):
  config = elmo_config(**{"data.seq_len": 60, "model.vocab_size": 100_000})  # every word: no <UNK>
  data = prepared_examples(config, str(tmp_path), seed=3)
  vocab = data.tokenizer
  words = np.array(vocab.words)
  a, b = data.global_batch(4, 8), data.global_batch(5, 8)
  # Row r of batch k+1 starts with the token row r of batch k predicted last (but where
  # a chunk of the shuffled stream ends).
  chunk, per_row = data._chunks(8)[0], data.windows_per_epoch(8)
  rows = [r for r in range(8) if (r * per_row + 5) % chunk]
  assert len(rows) >= 6
  np.testing.assert_array_equal(b["chars"][rows, 0],
                                vocab.chars(list(words[a["next_ids"][rows, -1]])))
  np.testing.assert_array_equal(b["chars_reverse"][rows, 0],
                                vocab.chars(list(words[a["next_ids_reverse"][rows, -1]])))
  # Pure in (seed, k), whatever was read before.
  again = prepared_examples(config, str(tmp_path), seed=3).global_batch(5, 8)
  assert all(np.array_equal(again[k], b[k]) for k in b)
  # A whole sentence in the forward stream reads reversed in the backward stream.
  forward = [list(words[row]) for row in a["next_ids"]]
  backward = [list(words[row]) for row in a["next_ids_reverse"]]
  row = next(r for r, f in enumerate(forward) if f.count("<S>") and "</S>" in f[f.index("<S>"):])
  start = forward[row].index("<S>")
  sentence = forward[row][start:forward[row].index("</S>", start) + 1]
  assert sentence[::-1] in [backward[row][start:start + len(sentence)]]


# ---------------------------------------------------------------------------
# The LSTM and the sampled softmax
# ---------------------------------------------------------------------------

def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_lstm_scan_matches_a_step_by_step_reference():
  cfg = elmo_config().model
  cfg.update(cell_clip=0.5, proj_clip=0.3)  # small, so that clipping happens
  layer = elmo.LSTMLayer(cfg, rngs=nnx.Rngs(0))
  for name in ("input_kernel", "recurrent_kernel", "bias"):  # large weights: saturate the clips
    var = getattr(layer, name)
    var[...] = var[...] * 4 + 0.3
  p, d = cfg.projection_dim, cfg.lstm_dim
  x = np.random.default_rng(0).normal(size=(3, 7, p)).astype(np.float32)
  c0 = np.random.default_rng(1).normal(size=(3, d)).astype(np.float32)
  h0 = np.random.default_rng(2).normal(size=(3, p)).astype(np.float32) * 0.1
  hs, (c_last, h_last) = layer(jnp.asarray(x), (jnp.asarray(c0), jnp.asarray(h0)))
  w = np.concatenate([np.asarray(layer.input_kernel[...]).reshape(p, 4 * d),
                      np.asarray(layer.recurrent_kernel[...]).reshape(p, 4 * d)])
  bias, proj = np.asarray(layer.bias[...]).reshape(-1), np.asarray(layer.projection[...])
  c, h = c0.astype(np.float64), h0.astype(np.float64)
  clipped = 0
  for t in range(x.shape[1]):  # TF 1.x LSTMCell(num_proj, cell_clip, proj_clip, forget_bias=1)
    z = np.concatenate([x[:, t], h], 1) @ w + bias
    i, j, f, o = np.split(z, 4, axis=1)
    c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)
    clipped += (np.abs(c) > 0.5).sum()
    c = np.clip(c, -0.5, 0.5)
    h = np.clip((_sigmoid(o) * np.tanh(c)) @ proj, -0.3, 0.3)
    np.testing.assert_allclose(np.asarray(hs[:, t]), h, atol=2e-6)
  assert clipped > 0
  np.testing.assert_allclose(np.asarray(c_last), c, atol=2e-6)
  np.testing.assert_allclose(np.asarray(h_last), h, atol=2e-6)


def test_sampled_softmax():
  v, k, n, dim = 1000, 200, 6, 8
  rng = np.random.default_rng(0)
  x, w = rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(v, dim)).astype(np.float32)
  b = rng.normal(size=v).astype(np.float32)
  labels = np.array([0, 1, 5, 40, 300, 999], np.int32)
  key = jax.random.key(7)
  # Distinct classes, frequent (small) ids far more often.
  sampled = np.asarray(sampled_softmax.sample_classes(key, v, k))
  assert len(set(sampled.tolist())) == k and sampled.min() >= 0 and sampled.max() < v
  counts = np.zeros(v)
  for s in range(20):
    counts[np.asarray(sampled_softmax.sample_classes(jax.random.key(s), v, k))] += 1
  assert counts[:10].mean() > 0.95 * 20 and counts[-100:].mean() < 0.3 * 20
  # The expected counts of a distinct sample add up to its size.
  assert abs(np.exp(sampled_softmax.log_expected_counts(v, k)).sum() - k) < 1e-2
  # The loss: corrected logits, the true class against the sampled ones minus accidental hits.
  log_q = sampled_softmax.log_expected_counts(v, k).astype(np.float64)
  logits = x.astype(np.float64) @ w.T + b - log_q
  expected = []
  for row, y in enumerate(labels):
    negatives = [logits[row, c] for c in sampled if c != y]
    expected.append(np.logaddexp.reduce([logits[row, y], *negatives]) - logits[row, y])
  got = sampled_softmax.sampled_cross_entropy(x, labels, w, b, key, k)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)
  assert 0 in sampled  # label 0 was an accidental hit
  # With every class sampled it is the exact softmax cross-entropy.
  full = np.asarray(sampled_softmax.full_cross_entropy(x, labels, w, b))
  exact = np.log(np.exp(x @ w.T + b).sum(1)) - (x @ w.T + b)[np.arange(n), labels]
  np.testing.assert_allclose(full, exact, rtol=1e-4)
  np.testing.assert_allclose(
      np.asarray(sampled_softmax.sampled_cross_entropy(x, labels, w, b, key, v)), full)


def test_scalar_mix_is_allennlps():
  layers = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
  np.testing.assert_allclose(elmo.scalar_mix(layers, np.zeros(3)), layers.mean(1), atol=1e-6)
  w = np.array([0.5, -1.0, 2.0], np.float32)
  soft = np.exp(w) / np.exp(w).sum()
  np.testing.assert_allclose(elmo.scalar_mix(layers, w, 2.0),
                             2.0 * np.einsum("k,bk...->b...", soft, layers), atol=1e-5)


def test_config_refusals():
  for overrides, message in [
      ({"model.projection_dim": 64}, "fewer than model.projection_dim"),
      ({"train.grad_accum_steps": 2}, "data.stateful carries the LSTM state"),
      ({"model.activation": "gelu"}, "must be relu or tanh"),
  ]:
    with pytest.raises(UserError, match=message):
      families.validate(elmo_config(**overrides))


# ---------------------------------------------------------------------------
# Training, resume, export, simple_elmo
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A 60-step tiny run (evaluations at 30 and 60), shared by the tests below."""
  workdir = str(tmp_path_factory.mktemp("elmo"))
  train.run(elmo_config(), workdir)
  return workdir


def test_perplexities_fall(trained):
  records = read_metrics(trained)
  steps = [m for m in records if "loss" in m]
  evals = [m for m in records if "eval_loss" in m]
  assert len(steps) == 60 and [m["step"] for m in evals] == [30, 60]
  for direction in ("forward", "backward"):
    first = np.mean([m[f"{direction}_perplexity"] for m in steps[:5]])
    last = np.mean([m[f"{direction}_perplexity"] for m in steps[-5:]])
    assert last < first / 2, (direction, first, last)
    assert evals[1][f"eval_{direction}_perplexity"] < evals[0][f"eval_{direction}_perplexity"]
    assert evals[1][f"eval_{direction}_perplexity"] < 1000  # from ~2000 (the vocabulary)
  assert os.path.exists(os.path.join(trained, "tokenizer", "vocab.txt"))
  assert os.path.isdir(os.path.join(trained, "checkpoints", "60", "carry"))


def test_exact_resume_carries_the_lstm_state(trained, tmp_path):
  resumed = str(tmp_path)
  train.run(elmo_config(**{"train.steps": 30, "train.schedule_steps": 60}), resumed)
  train.run(elmo_config(), resumed)
  losses = lambda d: {m["step"]: m["loss"] for m in read_metrics(d) if "loss" in m}
  a, b = losses(trained), losses(resumed)
  assert sorted(b) == list(range(1, 61))
  assert [a[s] for s in range(31, 61)] == [b[s] for s in range(31, 61)]  # bitwise
  evals = lambda d: [m for m in read_metrics(d) if "eval_loss" in m]
  assert evals(trained) == evals(resumed)


def _simple_elmo_python():
  """The virtualenv with simple_elmo and TensorFlow, created once (about a minute)."""
  python = os.path.join(SIMPLE_ELMO_VENV, "bin", "python")
  ready = os.path.join(SIMPLE_ELMO_VENV, ".ready")
  os.makedirs(os.path.dirname(SIMPLE_ELMO_VENV), exist_ok=True)
  with open(SIMPLE_ELMO_VENV + ".lock", "w") as lock:  # one creator at a time
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(ready):
      start = time.time()
      tmp = f"{SIMPLE_ELMO_VENV}.tmp-{os.getpid()}"
      subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
      for packages in SIMPLE_ELMO_PACKAGES:
        subprocess.run([os.path.join(tmp, "bin", "python"), "-m", "pip", "install", "-q",
                        *packages], check=True)
      if os.path.exists(SIMPLE_ELMO_VENV):
        subprocess.run(["rm", "-rf", SIMPLE_ELMO_VENV], check=True)
      os.replace(tmp, SIMPLE_ELMO_VENV)
      with open(ready, "w") as f:
        f.write(f"created in {time.time() - start:.0f} s\n")
  return python


def test_export_gives_simple_elmos_embeddings(trained, tmp_path):
  out = str(tmp_path / "export")
  result = subprocess.run([sys.executable, "-m", "lm_jax.export", f"--workdir={trained}",
                           "--format=elmo", f"--out={out}"], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(out)) == ["options.json", "vocab.txt", "weights.hdf5"]
  with open(os.path.join(out, "options.json")) as f:
    options = json.load(f)
  assert options["char_cnn"]["n_characters"] == 262 and options["lstm"]["use_skip_connections"]
  assert open(os.path.join(out, "vocab.txt")).read().split("\n")[:3] == ["<S>", "</S>", "<UNK>"]

  sentences = [["Emma", "Woodhouse", ",", "handsome", ",", "clever", ",", "and", "rich", "."],
               ["She", "was", "the", "youngest", "."],
               ["Naïveté", "—", "a", "supercalifragilisticexpialidocious", "word", "!"],
               ["Mr.", "Knightley"]]
  path = tmp_path / "sentences.json"
  path.write_text(json.dumps(sentences))
  reference = str(tmp_path / "reference.npz")
  result = subprocess.run([_simple_elmo_python(), os.path.join(REPO, "tests", "elmo_reference.py"),
                           out, str(path), reference], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  theirs = np.load(reference)["layers"]

  ours = lm_jax.load(trained).embed(sentences)
  assert ours["layers"].shape == theirs.shape == (4, 3, 10, 32)
  mask = ours["mask"][:, None, :, None]
  for k in range(3):  # char encoder, LSTM 1, LSTM 2
    diff = np.abs((ours["layers"][:, k] - theirs[:, k]) * mask[:, 0]).max()
    print(f"layer {k}: max |lm_jax - simple_elmo| = {diff:.2e}")
    assert diff < 1e-4, (k, diff)
  np.testing.assert_allclose(ours["mix"], ours["layers"].mean(1), atol=1e-6)
  # Each sentence alone gives the same vectors as in the batch (zero states, masked padding).
  alone = lm_jax.load(trained).embed(sentences[3:])
  np.testing.assert_allclose(alone["layers"][0, :, :2], ours["layers"][3, :, :2], atol=1e-5)


def test_hf_export_of_an_elmo_run_is_refused(trained, tmp_path):
  from lm_jax import export
  with pytest.raises(UserError, match="add --format=elmo"):
    export.export(trained, str(tmp_path))


def test_original_compiles(tmp_path):
  """bilm-tf's full-size model (793471-word softmax, 2x4096 LSTMs) builds and compiles."""
  vocab_dir = tmp_path / "vocab"
  vocab_dir.mkdir()
  words = ["<S>", "</S>", "<UNK>"] + [f"w{i}" for i in range(793471 - 3)]
  (vocab_dir / "vocab.txt").write_text("\n".join(words) + "\n")
  from configs import elmo as elmo_configs
  c = elmo_configs.get_config("original")
  c.data.tokenizer = str(vocab_dir)
  c.train.compile_only = True
  compiled = train.run(c, str(tmp_path / "run"))
  assert compiled is not None
