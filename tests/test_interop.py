"""HuggingFace interop: lm_jax -> transformers and back give the same logits.

CPU, float32. Every HF model is built from a config here (no hub access).
Random parameters are perturbed away from their initial values, so a
LayerNorm or bias exported to the wrong place cannot go unnoticed.
"""
import json
import os
import shutil
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors import safe_open
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from conftest import REPO, run_main, tiny_config
import lm_jax
from lm_jax import checkpoint, export, interop, parallel, state, train
from lm_jax import workdir as workdir_lib
from lm_jax.data import hf_tokenizer, packing, sources, tokenizer as tokenizer_lib
from lm_jax.errors import UserError

TOLERANCE = 1e-4
ODD_TEXTS = [
    "She was the [MASK] of the two daughters.", "[MASK] is here", "a  [MASK]  b",
    "word[MASK]x", "x [MASK][MASK] y", "[MASK]", "Café naïve résumé, über-façade",
    "ÀÉÎÕÜ ß æ œ", "  leading and trailing  ", "double  spaces   here", "tab\there\nnewline",
    "12,345.67 and 1999! #42", '"Quoted" -- dash; (paren)? [bracket] {brace}', "ﬁ ligature ①",
    "\u3042\u3044 😀", "", " ",
]
PAIRS = (["She was the [MASK] of the two daughters.", "Mr. Darcy bowed."],
         ["Emma laughed, and said nothing.", "Elizabeth [MASK] at him; he was gone."])


def austen_sentences(n, split="eval"):
  return [s for d in sources.embedded_documents(split) for s in packing.split_sentences(d)][:n]


def perturbed(tree, seed, scale=0.05):
  """`tree` plus Gaussian noise: no parameter keeps its initial 0 or 1."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [x + scale * jax.random.normal(k, x.shape, x.dtype)
                                      for x, k in zip(leaves, keys)])


def hf_batch(model_dir):
  """A padded pair batch with token types, from the directory's AutoTokenizer."""
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  return tok(*PAIRS, padding=True, return_tensors="np")


def hf_outputs(model_dir, batch):
  model, info = transformers.AutoModelForPreTraining.from_pretrained(
      model_dir, output_loading_info=True)
  assert not any(info.values()), info
  with torch.no_grad():
    out = model.eval()(**{k: torch.from_numpy(v) for k, v in batch.items()})
  return out.prediction_logits.numpy(), out.seq_relationship_logits.numpy()


def assert_logits_close(hf_mlm, hf_nsp, ours, batch):
  real = batch["attention_mask"][..., None].astype(bool)  # logits at padding are not compared
  mlm_diff = np.abs(np.where(real, hf_mlm - ours["mlm_logits"], 0)).max()
  nsp_diff = np.abs(hf_nsp - ours["nsp_logits"]).max()
  assert mlm_diff < TOLERANCE and nsp_diff < TOLERANCE, (mlm_diff, nsp_diff)


def safetensors_dict(path):
  with safe_open(os.path.join(path, "model.safetensors"), framework="numpy") as f:
    return {k: f.get_tensor(k) for k in f.keys()}


# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory):
  """A bert-base-uncased style tokenizer: vocab.txt + tokenizer_config.json only.

  Its special ids differ from lm_jax's ([UNK]=2 ... [MASK]=5) on purpose.
  """
  tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.train_from_iterator(austen_sentences(4000, "train"), trainers.WordPieceTrainer(
      vocab_size=1000, special_tokens=["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
  out = tmp_path_factory.mktemp("wordpiece")
  vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
  (out / "vocab.txt").write_text("".join(piece + "\n" for piece, _ in vocab), encoding="utf-8")
  (out / "tokenizer_config.json").write_text(json.dumps(
      dict(tokenizer_class="BertTokenizer", do_lower_case=True)))
  return str(out)


def test_exported_tokenizer_gives_lm_jax_ids(tokenizer_dir, tmp_path):
  ours = tokenizer_lib.load(tokenizer_dir)
  hf_tokenizer.save(ours, str(tmp_path), model_max_length=64)
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  reloaded = tokenizer_lib.load(str(tmp_path))  # lm_jax's HF backend on the same files
  texts = austen_sentences(1500) + ODD_TEXTS
  expected = ours.encode(texts)
  assert [theirs(t, add_special_tokens=False)["input_ids"] for t in texts] == expected
  assert reloaded.encode(texts) == expected
  assert theirs(texts[0])["input_ids"] == [ours.cls_id, *expected[0], ours.sep_id]
  pair = theirs(texts[0], texts[1])
  a, b = expected[:2]
  assert pair["input_ids"] == [ours.cls_id, *a, ours.sep_id, *b, ours.sep_id]
  assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
  assert (theirs.mask_token_id, theirs.pad_token_id) == (ours.mask_id, ours.pad_id)
  assert (reloaded.special_ids, reloaded.vocab_size) == (ours.special_ids, ours.vocab_size)
  np.testing.assert_array_equal(reloaded.word_starts(), ours.word_starts())


def test_wordpiece_vocab_backend_matches_transformers(wordpiece_dir):
  ours = tokenizer_lib.load(wordpiece_dir)
  theirs = transformers.AutoTokenizer.from_pretrained(wordpiece_dir)
  texts = austen_sentences(500) + ODD_TEXTS
  assert ours.encode(texts) == [theirs(t, add_special_tokens=False)["input_ids"] for t in texts]
  assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 2, 3, 4, 5)
  starts = ours.word_starts()
  assert all(starts[i] == (not ours.id_to_token(i).startswith("##")) for i in range(ours.vocab_size))


# ---------------------------------------------------------------------------
# Export: lm_jax -> transformers
# ---------------------------------------------------------------------------

def make_workdir(workdir, config, params):
  """A run directory holding `params` as the checkpoint of step 1."""
  workdir_lib.check_workdir(config, workdir)
  workdir_lib.record_config(config, workdir)
  tokenizer_lib.copy(config.data.tokenizer, os.path.join(workdir, "tokenizer"))
  mesh = parallel.make_mesh(config.mesh)
  ms = state.ModelState(config, mesh, parallel.rules(config.mesh), train.make_optimizer(config.train, 1))
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(1, params, ms.tx.init(params))
  ckpt.close()


def random_model(config, seed):
  """(ModelState, perturbed random params) for `config`."""
  mesh, rule_table = parallel.make_mesh(config.mesh), parallel.rules(config.mesh)
  ms = state.ModelState(config, mesh, rule_table, train.make_optimizer(config.train, 1))
  return ms, perturbed(ms.init(seed)[0], seed)


@pytest.mark.parametrize("scan_layers", [False, True], ids=["unrolled", "scanned"])
def test_export_matches_transformers(tokenizer_dir, tmp_path, scan_layers):
  config = tiny_config(tokenizer_dir, **{"model.scan_layers": scan_layers})
  ms, params = random_model(config, seed=1)
  workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
  make_workdir(workdir, config, params)
  assert export.export(workdir, out) == 1

  batch = hf_batch(out)
  ours = jax.tree.map(np.asarray, ms.model(params)(
      batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]))
  assert_logits_close(*hf_outputs(out, batch), ours, batch)
  _, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
  # BertForMaskedLM has no pooler and NSP head; transformers lists those as unexpected.
  assert not info["missing_keys"] and not info["mismatched_keys"]
  assert all(k.startswith(("bert.pooler.", "cls.seq_relationship.")) for k in info["unexpected_keys"])
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["architectures"] == ["BertForPreTraining"]


def test_bfloat16_export(tokenizer_dir, tmp_path):
  config = tiny_config(tokenizer_dir)
  _, params = random_model(config, seed=2)
  tok = tokenizer_lib.load(tokenizer_dir)
  interop.save_pretrained(str(tmp_path / "f32"), config.model, params, tok, "float32")
  interop.save_pretrained(str(tmp_path / "bf16"), config.model, params, tok, "bfloat16")
  f32, bf16 = safetensors_dict(str(tmp_path / "f32")), safetensors_dict(str(tmp_path / "bf16"))
  with safe_open(str(tmp_path / "bf16" / "model.safetensors"), framework="pt") as f:
    assert f.get_tensor("cls.predictions.bias").dtype == torch.bfloat16
  for name, x in f32.items():
    np.testing.assert_array_equal(bf16[name], x.astype(bf16[name].dtype), err_msg=name)


# ---------------------------------------------------------------------------
# Import: transformers -> lm_jax
# ---------------------------------------------------------------------------

def save_hf_bert(out, wordpiece_dir, *, model_class="BertForPreTraining", file="safetensors"):
  """A random tiny transformers BERT with the WordPiece tokenizer, saved in `out`."""
  torch.manual_seed(0)
  config = transformers.BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=48,
                                   max_position_embeddings=64)
  model = getattr(transformers, model_class)(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  if file == "safetensors":
    model.save_pretrained(out)
  elif file == "sharded":  # model-0000k-of-0000n.safetensors + model.safetensors.index.json
    model.save_pretrained(out, max_shard_size="100KB")
  else:  # torch's zip format, with the tied decoder copies older checkpoints carry
    config.save_pretrained(out)
    torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))
  for name in os.listdir(wordpiece_dir):
    shutil.copy(os.path.join(wordpiece_dir, name), out)
  return model


@pytest.mark.parametrize("file", ["safetensors", "sharded", "pytorch_bin"])
def test_import_matches_transformers_and_round_trips(wordpiece_dir, tmp_path, file):
  hf_dir, back = str(tmp_path / "hf"), str(tmp_path / "back")
  model = save_hf_bert(hf_dir, wordpiece_dir, file=file)
  batch = hf_batch(hf_dir)
  with torch.no_grad():
    theirs = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
  ours = lm_jax.load(hf_dir)
  assert ours.config.model.hidden_size == 32 and ours.tokenizer.mask_id == 5
  assert_logits_close(theirs.prediction_logits.numpy(), theirs.seq_relationship_logits.numpy(),
                      ours.forward(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]),
                      batch)

  interop.save_pretrained(back, ours.config.model, ours.params, ours.tokenizer)
  exported = safetensors_dict(back)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  assert set(state) - set(exported) == {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
  if file == "safetensors":  # the very tensors save_pretrained writes
    assert set(exported) == set(safetensors_dict(hf_dir))
  if file == "sharded":
    assert os.path.exists(os.path.join(hf_dir, "model.safetensors.index.json"))
  for name, x in exported.items():
    np.testing.assert_array_equal(x, state[name], err_msg=name)
  assert tokenizer_lib.load(back).encode(ODD_TEXTS) == ours.tokenizer.encode(ODD_TEXTS)


def test_headless_bert_model_import(wordpiece_dir, tmp_path, capsys):
  """A BertModel checkpoint: names without "bert.", no MLM or NSP head."""
  hf_dir = str(tmp_path / "hf")
  model = save_hf_bert(hf_dir, wordpiece_dir, model_class="BertModel")
  batch = hf_batch(hf_dir)
  with torch.no_grad():
    theirs = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
  ours = lm_jax.load(hf_dir).forward(batch["input_ids"], batch["token_type_ids"],
                                     batch["attention_mask"])["hidden_states"]
  real = batch["attention_mask"][..., None].astype(bool)
  assert np.abs(np.where(real, theirs - ours, 0)).max() < TOLERANCE
  # lm_jax.load builds no random initialisation (an abstract template): absent heads are zeros.
  assert "has no cls.predictions.* tensors; they are zeros" in capsys.readouterr().out


def test_import_checks_architecture_and_shapes(wordpiece_dir, tmp_path):
  hf_dir = str(tmp_path / "hf")
  save_hf_bert(hf_dir, wordpiece_dir)
  config_path = os.path.join(hf_dir, "config.json")
  with open(config_path) as f:
    hf_config = json.load(f)
  for change, message in [(dict(intermediate_size=40), "has shape [48, 32] but its config.json implies [40, 32]"),
                          (dict(hidden_act="relu"), "implements only hidden_act='gelu'"),
                          (dict(model_type="t5"), "lm_jax cannot import")]:
    with open(config_path, "w") as f:
      json.dump({**hf_config, **change}, f)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
      lm_jax.load(hf_dir)


# ---------------------------------------------------------------------------
# The command lines
# ---------------------------------------------------------------------------

def run_export(*args):
  return subprocess.run([sys.executable, "-m", "lm_jax.export", *args], cwd=REPO,
                        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                        timeout=300)


def test_trained_scanned_sharded_run_predicts_the_same_in_transformers(tokenizer_dir, tmp_path):
  """Trained with stacked layers on a 2x2 fsdp x tensor mesh, exported on one device."""
  workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
  trained = run_main(workdir, f"--config.data.tokenizer={tokenizer_dir}",
                     "--config.model.scan_layers=True", "--config.mesh.fsdp=2",
                     "--config.mesh.tensor=2", "--config.train.steps=40",
                     "--config.train.eval_every=0", "--config.train.checkpoint_every=40",
                     env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert trained.returncode == 0, trained.stderr[-3000:]
  exported = run_export(f"--workdir={workdir}", f"--out={out}")
  assert exported.returncode == 0, exported.stderr[-3000:]
  assert f"Exported step 40 of {workdir}" in exported.stdout

  ours = lm_jax.load(workdir)
  tok = transformers.AutoTokenizer.from_pretrained(out)
  model, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"]
  texts = ["She was the [MASK] of the two daughters.",
           "It is a truth universally [MASK], that a single man in possession of a good fortune "
           "must be in want of a [MASK].",
           "Mr. [MASK] bowed, and Elizabeth [MASK] him a very [MASK] answer."]
  for text in texts:
    batch = tok(text, return_tensors="pt")
    ids = batch["input_ids"][0].numpy()
    np.testing.assert_array_equal(ids, ours.encode([text])[0][0])
    with torch.no_grad():
      logits = model.eval()(**batch).logits[0].numpy()
    assert np.abs(logits - ours.mlm_logits([text])[0]).max() < TOLERANCE
    theirs = [np.argsort(-logits[p])[:5].tolist()
              for p in np.flatnonzero(ids == tok.mask_token_id)]
    found = ours.fill_mask(text)  # as the fill-mask pipeline: one mask, one list of candidates
    per_mask = found if isinstance(found[0], list) else [found]
    assert theirs == [[candidate["token"] for candidate in top] for top in per_mask]
  reloaded = lm_jax.load(out)  # the HF directory, read back by lm_jax
  assert np.abs(reloaded.mlm_logits(texts) - ours.mlm_logits(texts)).max() < TOLERANCE


def test_continued_pretraining_from_hf_checkpoint(wordpiece_dir, tmp_path):
  """A BertForMaskedLM (no pooler, no NSP head) with a bare vocab.txt tokenizer."""
  hf_dir, workdir, out = str(tmp_path / "hf"), str(tmp_path / "run"), str(tmp_path / "back")
  model = save_hf_bert(hf_dir, wordpiece_dir, model_class="BertForMaskedLM")
  result = run_main(workdir, f"--config.init.from_hf={hf_dir}", "--config.train.steps=2",
                    "--config.train.learning_rate=1e-9", "--config.train.eval_every=0",
                    "--config.train.checkpoint_every=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "bert.pooler.* tensors; they keep their fresh initialisation" in result.stdout
  assert sorted(os.listdir(os.path.join(workdir, "tokenizer"))) == ["tokenizer_config.json", "vocab.txt"]
  with open(os.path.join(workdir, "config.json")) as f:
    model_cfg = json.load(f)["model"]
  assert (model_cfg["hidden_size"], model_cfg["intermediate_size"], model_cfg["vocab_size"]) == (32, 48, 1000)

  export.export(workdir, out)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  exported = safetensors_dict(out)
  assert set(state) - set(exported) == {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
  for name, x in state.items():  # two steps at learning rate ~1e-9 leave the weights in place
    if name in exported:
      np.testing.assert_allclose(exported[name], x, atol=1e-6, err_msg=name)


def test_bad_inputs_are_one_sentence_and_exit_2(wordpiece_dir, tmp_path):
  unsupported = tmp_path / "t5"
  unsupported.mkdir()
  (unsupported / "config.json").write_text(json.dumps(
      dict(model_type="t5", architectures=["T5ForConditionalGeneration"])))
  mismatched = str(tmp_path / "mismatched")
  save_hf_bert(mismatched, wordpiece_dir)
  with open(os.path.join(mismatched, "config.json")) as f:
    hf_config = json.load(f)
  with open(os.path.join(mismatched, "config.json"), "w") as f:
    json.dump(dict(hf_config, num_attention_heads=2, hidden_size=16), f)
  cases = [
      (run_export(f"--workdir={tmp_path / 'missing'}", f"--out={tmp_path / 'out'}"),
       "is not an lm_jax run (no config.json)"),
      (run_export(f"--workdir={tmp_path / 'missing'}"), "--out (the HF directory to write)"),
      (run_main(str(tmp_path / "a"), f"--config.init.from_hf={unsupported}"),
       "holds a T5ForConditionalGeneration model, which lm_jax cannot import"),
      (run_main(str(tmp_path / "b"), f"--config.init.from_hf={mismatched}"),
       "bert.embeddings.word_embeddings.weight in"),
  ]
  for result, message in cases:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
