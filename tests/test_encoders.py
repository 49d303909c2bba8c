"""RoBERTa, ALBERT and ELECTRA: each tiny variant trains, resumes bit for bit,
exports to transformers with equal logits, and imports random HF models.

CPU, float32; HF models are built from configs (no hub access) and
perturbed, so a parameter exported to the wrong place cannot go unnoticed.
"""
import importlib
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import lm_jax
from lm_jax import config as config_lib, export, train
from conftest import prepared_examples
from lm_jax.data import hf_tokenizer, packing, prepare, prepared, sources
from lm_jax.data import tokenizer as tokenizer_lib
from lm_jax.errors import UserError

FAMILIES = ("roberta", "albert", "electra")
TOLERANCE = 1e-4
STEPS = 30
TEXTS = ["She was the [MASK] of the two daughters.",
         "It is a truth universally acknowledged, that a single man in possession of a good "
         "fortune must be in want of a wife.",
         "Mr. [MASK] bowed."]


def tiny_config(family, tokenizer_dir, **overrides):
  """configs/<family>.py:tiny, smaller still (hidden 64, seq 64, batch 8)."""
  c = importlib.import_module(f"configs.{family}").get_config("tiny")
  c.model.update(hidden_size=64, intermediate_size=128,
                 max_position_embeddings=66 if family == "roberta" else 64)
  if family == "albert":
    c.model.update(embedding_size=32, num_hidden_layers=3)
  if family == "electra":  # E != H on both sides: both embeddings_project layers exist
    c.model.update(embedding_size=48, generator_hidden_size=32, generator_intermediate_size=64)
  c.data.update(seq_len=64, max_predictions_per_seq=10, tokenizer=tokenizer_dir)
  c.train.update(steps=STEPS, schedule_steps=STEPS, batch_size=8, log_every=1, eval_every=0,
                 checkpoint_every=STEPS // 2, warmup_steps=5)
  return config_lib.override(c, overrides)


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, tmp_path_factory, tokenizer_dir):
  """(family, workdir) of a tiny run of STEPS steps, shared by the tests that read it."""
  workdir = str(tmp_path_factory.mktemp(request.param))
  train.run(tiny_config(request.param, tokenizer_dir), workdir)
  return request.param, workdir


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def test_full_sentence_blocks_cross_documents_with_a_separator(tokenizer_dir):
  tok = tokenizer_lib.load(tokenizer_dir)
  docs = sources.embedded_documents("eval")[:6]
  documents = [prepare.decode_document(r, False) for r in prepare.piece_records(docs, tok, dict(tokens=0))]
  blocks = [prepared.decode_ints(r)[0] for r in packing.full_sentence_blocks(documents, 0, 256, tok)]
  assert all(len(b) <= 254 for b in blocks)
  # Every token once, in order, with a [SEP] where a document starts inside a block.
  stream = np.concatenate(blocks)
  expected = np.concatenate([np.concatenate([[tok.sep_id], t]) for _, t in documents])[1:]
  if len(stream) == len(expected):
    np.testing.assert_array_equal(stream, expected)
  else:  # a sentence longer than a block was cut
    assert len(stream) < len(expected)
  assert sum(tok.sep_id in b for b in blocks) >= 4


def test_examples_are_pure_in_seed_and_index(tokenizer_dir, tmp_path):
  for family in FAMILIES:
    c = tiny_config(family, tokenizer_dir)
    a, b = (prepared_examples(c, str(tmp_path), split="eval", seed=3) for _ in range(2))
    for i in (0, 7, 10_000):  # 10_000: a later epoch
      ea, eb = a.example(i), b.example(i)
      assert all(np.array_equal(ea[k], eb[k]) for k in ea), family
    batch = a.global_batch(0, 16)
    assert (batch["token_type_ids"] == 0).all() == (family != "albert")
    if family == "albert":  # about half the pairs are swapped
      assert 0 < batch["sop_labels"].sum() < 16
    if family == "electra":
      assert batch["replacement_uniform"].shape == (16, c.data.max_predictions_per_seq)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

METRICS = dict(roberta=("mlm_loss", "mlm_accuracy"),
               albert=("mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"),
               electra=("mlm_loss", "mlm_accuracy", "disc_loss", "disc_accuracy"))


def test_loss_falls(trained):
  family, workdir = trained
  records = read_metrics(workdir)
  assert len(records) == STEPS and all(k in records[0] for k in METRICS[family])
  first, last = (np.mean([m[key] for m in part] ) for key in ("mlm_loss",)
                 for part in (records[:5], records[-5:]))
  assert last < first - 0.3, (family, first, last)
  losses = [m["loss"] for m in records]
  assert np.mean(losses[-5:]) < np.mean(losses[:5]), family
  if family == "electra":
    assert records[-1]["disc_loss"] < records[0]["disc_loss"]


def test_exact_resume(trained, tmp_path, tokenizer_dir):
  family, straight = trained
  resumed = str(tmp_path)
  train.run(tiny_config(family, tokenizer_dir, **{"train.steps": STEPS // 2}), resumed)
  train.run(tiny_config(family, tokenizer_dir), resumed)
  a = {m["step"]: m["loss"] for m in read_metrics(straight)}
  b = {m["step"]: m["loss"] for m in read_metrics(resumed)}
  assert sorted(b) == list(range(1, STEPS + 1))
  assert [a[s] for s in range(STEPS // 2 + 1, STEPS + 1)] == [b[s] for s in range(STEPS // 2 + 1, STEPS + 1)]


# ---------------------------------------------------------------------------
# Export: lm_jax -> transformers
# ---------------------------------------------------------------------------

def hf_logits(model_dir, model_class, ids, mask):
  """{output name: numpy} of transformers' `model_class` read from `model_dir`,
  after checking it found every weight and no other."""
  model, info = getattr(transformers, model_class).from_pretrained(model_dir,
                                                                   output_loading_info=True)
  assert not any(info.values()), (model_class, info)
  with torch.no_grad():
    out = model.eval()(input_ids=torch.from_numpy(ids).long(),
                       attention_mask=torch.from_numpy(mask).long(),
                       token_type_ids=torch.zeros(ids.shape, dtype=torch.long))
  return {k: v.numpy() for k, v in out.items() if k != "loss"}


def max_diff(a, b, mask=None):
  """Largest |a - b| over real (unpadded) tokens."""
  d = np.abs(a - b)
  if mask is not None:
    d = np.where(mask.reshape(mask.shape + (1,) * (d.ndim - mask.ndim)).astype(bool), d, 0)
  return float(d.max())


def compare(family, ours, hf_dir, ids, mask):
  """Max abs differences between our outputs and transformers' for `family`."""
  if family == "roberta":
    theirs = hf_logits(hf_dir, "RobertaForMaskedLM", ids, mask)
    return dict(mlm=max_diff(theirs["logits"], ours["mlm_logits"], mask))
  if family == "albert":
    theirs = hf_logits(hf_dir, "AlbertForPreTraining", ids, mask)
    return dict(mlm=max_diff(theirs["prediction_logits"], ours["mlm_logits"], mask),
                sop=max_diff(theirs["sop_logits"], ours["sop_logits"]))
  disc = hf_logits(hf_dir, "ElectraForPreTraining", ids, mask)
  gen = hf_logits(os.path.join(hf_dir, "generator"), "ElectraForMaskedLM", ids, mask)
  return dict(discriminator=max_diff(disc["logits"], ours["discriminator_logits"], mask),
              generator=max_diff(gen["logits"], ours["mlm_logits"], mask))


def test_export_matches_transformers(trained, tmp_path):
  family, workdir = trained
  out = str(tmp_path / "hf")
  assert export.export(workdir, out) == STEPS
  ours = lm_jax.load(workdir)
  ids, _, mask = ours.encode(TEXTS)
  assert mask.min() == 0  # a padded batch
  outputs = ours(TEXTS)
  diffs = compare(family, outputs, out, ids, mask)
  print(family, "export max abs diff", diffs)
  assert max(diffs.values()) < TOLERANCE, diffs
  reloaded = lm_jax.load(out)  # the HF directory (ELECTRA: with generator/) read back by lm_jax
  again = reloaded(TEXTS)
  for key, value in outputs.items():
    per_token = value.shape[:2] == mask.shape
    assert max_diff(again[key], value, mask if per_token else None) < TOLERANCE, key


# ---------------------------------------------------------------------------
# Import: transformers -> lm_jax
# ---------------------------------------------------------------------------

def perturb(model, seed):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model.eval()


def save_random_hf(family, out, tokenizer_dir):
  """A random tiny transformers model of the family, saved with lm_jax's tokenizer."""
  tok = tokenizer_lib.load(tokenizer_dir)
  sizes = dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=48, pad_token_id=tok.pad_id)
  if family == "roberta":
    model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        **sizes, max_position_embeddings=66, type_vocab_size=1))
  elif family == "albert":
    model = transformers.AlbertForPreTraining(transformers.AlbertConfig(
        **dict(sizes, num_hidden_layers=3), embedding_size=16, max_position_embeddings=64))
  else:
    model = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        **sizes, embedding_size=24, max_position_embeddings=64))
  perturb(model, 0).save_pretrained(out)
  hf_tokenizer.save(tok, out, 64)
  if family == "electra":  # the generator shares the discriminator's embeddings
    generator = perturb(transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        **dict(sizes, hidden_size=16, num_attention_heads=2, intermediate_size=32),
        embedding_size=24, max_position_embeddings=64)), 1)
    generator.electra.embeddings.load_state_dict(model.electra.embeddings.state_dict())
    generator.save_pretrained(os.path.join(out, "generator"))
    hf_tokenizer.save(tok, os.path.join(out, "generator"), 64)


@pytest.mark.parametrize("family", FAMILIES)
def test_import_random_hf_model(family, tmp_path, tokenizer_dir):
  hf_dir = str(tmp_path)
  save_random_hf(family, hf_dir, tokenizer_dir)
  ours = lm_jax.load(hf_dir)
  assert ours.config.model.family == family and ours.config.model.hidden_size == 32
  ids, _, mask = ours.encode(TEXTS)
  diffs = compare(family, ours(TEXTS), hf_dir, ids, mask)
  print(family, "import max abs diff", diffs)
  assert max(diffs.values()) < TOLERANCE, diffs


def test_electra_discriminator_alone_imports_with_a_fresh_generator(tmp_path, tokenizer_dir, capsys):
  hf_dir = str(tmp_path)
  save_random_hf("electra", hf_dir, tokenizer_dir)
  import shutil
  shutil.rmtree(os.path.join(hf_dir, "generator"))
  ours = lm_jax.load(hf_dir)
  assert "has no generator/ model" in capsys.readouterr().out
  ids, _, mask = ours.encode(TEXTS)
  disc = hf_logits(hf_dir, "ElectraForPreTraining", ids, mask)
  assert max_diff(disc["logits"], ours(TEXTS)["discriminator_logits"], mask) < TOLERANCE


def test_refusals_are_one_sentence(tmp_path, tokenizer_dir):
  with pytest.raises(UserError, match="needs model.max_position_embeddings >= 65"):
    train.run(tiny_config("roberta", tokenizer_dir, **{"model.max_position_embeddings": 64}),
              str(tmp_path / "a"))
  with pytest.raises(UserError, match="model.pad_token_id=1; set --config.model.pad_token_id=0"):
    train.run(tiny_config("roberta", tokenizer_dir, **{"model.pad_token_id": 1,
                                                       "model.max_position_embeddings": 66}),
              str(tmp_path / "b"))
  hf_dir = str(tmp_path / "albert")
  save_random_hf("albert", hf_dir, tokenizer_dir)
  with open(os.path.join(hf_dir, "config.json")) as f:
    config = json.load(f)
  with open(os.path.join(hf_dir, "config.json"), "w") as f:
    json.dump(dict(config, num_hidden_groups=2), f)
  with pytest.raises(UserError, match="implements only num_hidden_groups=1"):
    lm_jax.load(hf_dir)
