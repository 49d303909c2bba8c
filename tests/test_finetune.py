"""Fine-tuning: pre-training helps, long documents are read whole, classifiers
export to transformers with equal logits, seeds give a median, bad input is
one sentence."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

from lm_jax.data import labelled, reviews


def run(config, workdir, *flags, timeout=600, env=None):
  cmd = [sys.executable, "-m", "lm_jax.main", f"--config={os.path.join(REPO, 'configs', config)}",
         f"--workdir={workdir}", *flags]
  return subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, **(env or {})),
                        capture_output=True, text=True, timeout=timeout)


def ok(result):
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


def final_eval(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(l) for l in f]
  return [l for l in lines if "eval_accuracy" in l][-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return reviews.write(str(tmp_path_factory.mktemp("reviews")))


# A tiny BERT small enough to get past MLM's unigram plateau in ~1 minute on 2 cores.
SMALL = ["--config.model.hidden_size=64", "--config.model.intermediate_size=256",
         "--config.data.seq_len=32"]


@pytest.fixture(scope="module")
def pretrained_run(data, tokenizer_dir, tmp_path_factory):
  """A tiny BERT pre-trained with MLM + NSP on the unlabelled reviews."""
  workdir = str(tmp_path_factory.mktemp("reviews_lm"))
  ok(run("bert_base.py:tiny", workdir, *SMALL, f"--config.data.files={data['unlabelled']}",
         f"--config.data.tokenizer={tokenizer_dir}", "--config.data.max_predictions_per_seq=6",
         "--config.train.learning_rate=3e-3", "--config.train.steps=1000",
         "--config.train.eval_every=0", "--config.train.checkpoint_every=1000",
         "--config.train.log_every=500"))
  return workdir


def test_pretrained_encoder_beats_random_initialisation(data, pretrained_run, tokenizer_dir,
                                                        tmp_path):
  """The test reviews use opinion words the labelled ones never do: only the
  pre-trained encoder has met them (lm_jax/data/reviews.py)."""
  common = [*SMALL, f"--config.data.files={data['train']}",
            f"--config.data.eval_files={data['test']}", "--config.train.steps=100"]
  ok(run("finetune_reviews.py", tmp_path / "pre", *common,
         f"--config.init.from_workdir={pretrained_run}"))
  ok(run("finetune_reviews.py", tmp_path / "scratch", *common,
         f"--config.data.tokenizer={tokenizer_dir}"))
  pre, scratch = final_eval(tmp_path / "pre"), final_eval(tmp_path / "scratch")
  print("pre-trained", pre, "scratch", scratch)
  assert pre["eval_accuracy"] >= 0.9
  assert pre["eval_accuracy"] >= scratch["eval_accuracy"] + 0.2
  assert {"eval_f1", "eval_mcc", "eval_loss"} <= set(pre)


def test_hf_encoder_fine_tunes_like_the_workdir_it_was_exported_from(data, pretrained_run,
                                                                     tmp_path):
  """init.from_hf of an export = init.from_workdir of its run: the same losses."""
  from lm_jax import export
  export.export(pretrained_run, str(tmp_path / "hf"))
  common = [*SMALL, f"--config.data.files={data['train']}", "--config.train.steps=6",
            "--config.train.log_every=1", "--config.train.eval_every=0"]
  ok(run("finetune_reviews.py", tmp_path / "a", *common,
         f"--config.init.from_workdir={pretrained_run}"))
  ok(run("finetune_reviews.py", tmp_path / "b", *common, f"--config.init.from_hf={tmp_path}/hf"))
  losses = [[json.loads(l)["loss"] for l in open(tmp_path / d / "metrics.jsonl")] for d in "ab"]
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_split_document_covers_long_documents():
  ids = list(range(1000))
  windows = labelled.split_document(ids, 62, "sliding_window", 31)
  assert all(len(w) == 62 for w in windows)
  assert sorted(set(i for w in windows for i in w)) == ids  # every piece is read
  assert windows[-1][-1] == 999 and len(windows) == 32
  assert labelled.split_document(ids, 62, "truncate", 31) == [ids[:62]]
  (head_tail,) = labelled.split_document(ids, 62, "head_tail", 31)
  assert head_tail == ids[:15] + ids[-47:]
  assert labelled.split_document(ids[:10], 62, "sliding_window", 31) == [ids[:10]]


def test_sliding_window_reads_documents_longer_than_seq_len(data, pretrained_run, tmp_path):
  """Long reviews (~250 words) give their verdict at the end, past the first window."""
  common = [f"--config.init.from_workdir={pretrained_run}",
            f"--config.data.files={data['long_train']}",
            f"--config.data.eval_files={data['long_test']}"]
  ok(run("finetune_reviews.py:long", tmp_path / "window", *common))
  ok(run("finetune_reviews.py:long", tmp_path / "truncate", *common,
         "--config.data.long_document=truncate"))
  window, truncate = final_eval(tmp_path / "window"), final_eval(tmp_path / "truncate")
  print("sliding_window", window, "truncate", truncate)
  assert window["eval_accuracy"] >= 0.85
  assert truncate["eval_accuracy"] <= 0.65  # the first window holds no opinion


def test_seeds_report_the_median(data, tokenizer_dir, tmp_path):
  out = ok(run("finetune_reviews.py", tmp_path, *SMALL, f"--config.data.tokenizer={tokenizer_dir}", f"--config.data.files={data['train']}",
               f"--config.data.eval_files={data['test']}", "--config.train.steps=10",
               "--config.train.seeds=2"))
  summary = json.loads((tmp_path / "seeds.json").read_text())
  assert sorted(summary["seeds"]) == ["0", "1"]
  accuracies = [m["eval_accuracy"] for m in summary["seeds"].values()]
  assert summary["median"]["eval_accuracy"] == pytest.approx(float(np.median(accuracies)))
  assert "Median over 2 seeds" in out.stdout


def test_sharded_fine_tuning_matches_one_device(data, tokenizer_dir, tmp_path):
  """A 2x2x2 (data, fsdp, tensor) mesh of 8 CPU devices vs 1 device: the same
  losses and evaluation."""
  common = [*SMALL, f"--config.data.tokenizer={tokenizer_dir}",
            f"--config.data.files={data['train']}", f"--config.data.eval_files={data['test']}",
            "--config.train.steps=6", "--config.train.log_every=1", "--config.train.eval_every=6"]
  ok(run("finetune_reviews.py", tmp_path / "one", *common))
  ok(run("finetune_reviews.py", tmp_path / "mesh", *common, "--config.mesh.data=2",
         "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
         env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}))
  one, mesh = ([json.loads(l) for l in open(tmp_path / d / "metrics.jsonl")] for d in ("one", "mesh"))
  np.testing.assert_allclose([m["loss"] for m in one if "loss" in m],
                             [m["loss"] for m in mesh if "loss" in m], rtol=1e-4)
  np.testing.assert_allclose(one[-1]["eval_loss"], mesh[-1]["eval_loss"], rtol=1e-4)
  assert one[-1]["eval_accuracy"] == mesh[-1]["eval_accuracy"]


def _ner_records(n, seed):
  rng = np.random.default_rng(seed)
  people, places = ["Emma", "Harriet", "Knightley", "Elton"], ["Highbury", "London", "Bath"]
  out = []
  for _ in range(n):
    p, q = people[rng.integers(4)], places[rng.integers(3)]
    words = ["Mr", p, "walked", "to", q, "."] if rng.random() < 0.5 else [q, "welcomed", p, "."]
    tags = {p: "B-PER", q: "B-LOC", "Mr": "B-PER"}
    labels = [tags.get(w, "O") for w in words]
    if words[0] == "Mr":
      labels[1] = "I-PER"
    out.append(dict(tokens=words, tags=labels))
  return out


def test_token_classification_learns_entities(tokenizer_dir, tmp_path):
  for name, rows in (("train", _ner_records(200, 0)), ("dev", _ner_records(50, 1))):
    with open(tmp_path / f"{name}.jsonl", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  workdir = tmp_path / "run"
  ok(run("finetune_ner.py", workdir, "--config.data.tfds_name=",
         f"--config.data.files={tmp_path}/train.jsonl",
         f"--config.data.eval_files={tmp_path}/dev.jsonl", "--config.data.text_keys=tokens",
         "--config.data.label_key=tags", f"--config.data.tokenizer={tokenizer_dir}",
         "--config.model.vocab_size=8000", "--config.model.hidden_size=64",
         "--config.model.num_hidden_layers=2", "--config.model.num_attention_heads=2",
         "--config.model.intermediate_size=128", "--config.data.seq_len=32",
         "--config.train.steps=60", "--config.train.learning_rate=1e-3",
         "--config.train.warmup_steps=6", "--config.train.eval_every=60",
         "--config.train.checkpoint_every=60", "--config.train.log_every=20"))
  metrics = final_eval(workdir)
  assert metrics["eval_f1"] >= 0.9, metrics
  assert {"eval_precision", "eval_recall"} <= set(metrics)


@pytest.mark.parametrize("bad,message", [
    ("--config.model.labels=('good','bad')", "is not one of model.labels"),
    ("--config.data.text_keys=review", "has no 'review' field"),
    ("--config.data.long_document=middle", "data.long_document='middle' is not one of"),
])
def test_bad_input_is_one_sentence(data, tokenizer_dir, tmp_path, bad, message):
  result = run("finetune_reviews.py", tmp_path, f"--config.data.tokenizer={tokenizer_dir}", f"--config.data.files={data['train']}",
               bad, timeout=120)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def _classifier_config(family, task, labels, tokenizer_dir):
  from lm_jax import config as config_lib
  sizes = dict(vocab_size=8000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=128, max_position_embeddings=64)
  if family == "roberta":
    sizes["max_position_embeddings"] = 66
  if family == "electra":  # E != H: embeddings_project exists
    sizes.update(embedding_size=48, generator_hidden_size=32, generator_intermediate_size=64)
  model = getattr(config_lib, f"{family}_model")(**sizes)
  c = config_lib.finetune_config(model, task, labels)
  c.data.update(tokenizer=tokenizer_dir, seq_len=32)
  return c


@pytest.mark.parametrize("family,task,labels", [
    ("bert", "sequence_classification", ("score",)),  # regression, on BERT's pooler
    ("roberta", "sequence_classification", ("a", "b", "c")),  # dense + tanh head
    ("electra", "sequence_classification", ("neg", "pos")),   # dense + gelu head
    ("roberta", "token_classification", ("O", "B-LOC", "I-LOC")),
])
def test_classifier_export_matches_transformers(family, task, labels, tokenizer_dir, tmp_path):
  """Exported as AutoModelFor{Sequence,Token}Classification, the same logits;
  read back by lm_jax.load (init.from_hf's path), the same model."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import lm_jax
  from lm_jax import interop
  from lm_jax.data import tokenizer as tokenizer_lib
  from test_interop import random_model

  config = _classifier_config(family, task, labels, tokenizer_dir)
  ms, params = random_model(config, seed=3)
  out = str(tmp_path / "hf")
  interop.save_pretrained(out, config.model, params, tokenizer_lib.load(tokenizer_dir))
  auto = (transformers.AutoModelForSequenceClassification if task == "sequence_classification"
          else transformers.AutoModelForTokenClassification)
  hf_model, info = auto.from_pretrained(out, output_loading_info=True)
  assert not any(info.values()), info  # no missing, unexpected or mismatched tensors
  assert hf_model.config.id2label == dict(enumerate(labels))
  assert hf_model.config.problem_type == ("regression" if labels == ("score",) else
                                          "single_label_classification" if task.startswith("seq")
                                          else None)
  texts = ["Emma was handsome, clever and rich.", "Mr. Knightley bowed."]
  batch = transformers.AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="np")
  types = batch.get("token_type_ids", np.zeros_like(batch["input_ids"]))
  with torch.no_grad():
    theirs = hf_model.eval()(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
  ours = np.asarray(ms.model(params)(batch["input_ids"], types, batch["attention_mask"])["logits"])
  real = batch["attention_mask"].astype(bool)
  pick = (lambda x: x[real]) if task == "token_classification" else (lambda x: x)
  assert np.abs(pick(ours) - pick(theirs)).max() <= 1e-4
  reloaded = lm_jax.load(out)
  assert reloaded.config.model.task == task and tuple(reloaded.config.model.labels) == labels
  again = reloaded.forward(batch["input_ids"], types, batch["attention_mask"])["logits"]
  assert np.abs(pick(again) - pick(ours)).max() <= 1e-5


def test_tfds_datasets_by_name(tokenizer_dir, tmp_path):
  """glue/stsb (sentence pairs, regression) and imdb_reviews (sliding windows)
  through tfds.data_source, with tensorflow-datasets' mock data (no download).
  (Its mock conll2003 has tag lists unequal to the word lists; token tasks are
  tested on local files above.)"""
  tfds = pytest.importorskip("tensorflow_datasets")
  from configs import finetune_glue, finetune_imdb
  from lm_jax import train
  for name, config, metric in (("stsb", finetune_glue.get_config("stsb"), "eval_pearson"),
                               ("imdb", finetune_imdb.get_config(), "eval_accuracy")):
    config.model.update(vocab_size=8000, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    config.data.update(tokenizer=tokenizer_dir, seq_len=32, window_stride=16)
    config.train.update(steps=4, batch_size=4, warmup_steps=1, log_every=2, eval_every=4,
                        checkpoint_every=4)
    with tfds.testing.mock_data(num_examples=16):
      train.run(config, str(tmp_path / name))
    with open(tmp_path / name / "metrics.jsonl") as f:
      assert metric in json.loads(f.readlines()[-1])
