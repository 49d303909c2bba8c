"""train.phases: one run through phases of different sequence length (BERT's 128 -> 512).

The tiny BERT trains 6 steps at seq_len 32 (batch 8), then 4 at 64 (batch 4), on a
prepared corpus that holds only the seq-32 material at first.
"""
import json
import os
import shutil
import subprocess

import pytest

from conftest import override, tiny_config
from lm_jax import config as config_lib, families, train, workdir as workdir_lib
from lm_jax.data import prepare
from lm_jax.errors import UserError

PHASES = "32x8:6,64x4:4"
STEPS = 10


def phased_config(tokenizer_dir, corpus, **overrides):
  # schedule_steps holds the schedule (the phases' sum) while train.steps stops a run early.
  return tiny_config(tokenizer_dir, **{
      "data.prepared": corpus, "train.phases": PHASES, "train.steps": STEPS,
      "train.schedule_steps": STEPS, "train.eval_every": 3, "train.eval_steps": 1,
      "train.checkpoint_every": 100, **overrides})


def files_under(directory):
  """{relative path: (size, mtime_ns)} of every file under `directory`."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      st = os.stat(os.path.join(root, name))
      out[os.path.relpath(os.path.join(root, name), directory)] = (st.st_size, st.st_mtime_ns)
  return out


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def train_records(workdir):
  return {m["step"]: m for m in records(workdir) if "loss" in m}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tokenizer_dir):
  """(corpus, a copy of it before the run, documents/ before the run, the uninterrupted
  phased run's workdir)."""
  root = tmp_path_factory.mktemp("phases")
  corpus, untouched = str(root / "corpus"), str(root / "corpus_32_only")
  first = tiny_config(tokenizer_dir, **{"data.seq_len": 32, "data.max_predictions_per_seq": 5})
  prepare.prepare(first, corpus, families.FAMILIES["bert"].examples, tokenizer=tokenizer_dir,
                  log=lambda _: None)
  shutil.copytree(corpus, untouched)
  documents = files_under(os.path.join(corpus, "documents"))
  workdir = str(root / "straight")
  train.run(phased_config(tokenizer_dir, corpus), workdir)
  return corpus, untouched, documents, workdir


def test_a_resume_before_at_and_after_the_boundary_is_the_same_run(straight, tokenizer_dir,
                                                                   tmp_path):
  corpus, _, documents, uninterrupted = straight
  # The seq-64 material was made from the documents, which were not tokenized again.
  assert files_under(os.path.join(corpus, "documents")) == documents
  assert os.path.exists(os.path.join(corpus, "sentence_blocks-64", "manifest.json"))

  resumed = str(tmp_path / "resumed")
  for stop in (5, 6, 7, STEPS):  # just before the boundary, at it, just after it, the end
    train.run(phased_config(tokenizer_dir, corpus, **{"train.steps": stop}), resumed)
  a, b = train_records(uninterrupted), train_records(resumed)
  assert sorted(b) == list(range(1, STEPS + 1))  # one line per step, none repeated
  assert [a[s]["loss"] for s in a] == [b[s]["loss"] for s in a]  # bitwise
  assert [a[s]["phase"] for s in range(1, STEPS + 1)] == [1] * 6 + [2] * 4
  assert [b[s]["phase"] for s in range(1, STEPS + 1)] == [1] * 6 + [2] * 4
  # One schedule over both phases: warm-up, then a linear decay that does not restart.
  lr = [a[s]["learning_rate"] for s in range(1, STEPS + 1)]
  assert lr.index(max(lr)) == 5 and lr[5:] == sorted(lr[5:], reverse=True)
  evals = lambda d: [m for m in records(d) if "eval_loss" in m and m["step"] in (3, 6, 9, 10)]
  assert evals(uninterrupted) == evals(resumed)  # (the resumed run also evaluated at each stop)


def test_each_phase_reads_its_own_seq_len_and_batch(straight, tokenizer_dir):
  corpus, _, _, workdir = straight
  phased = workdir_lib.run_data(phased_config(tokenizer_dir, corpus), workdir)
  shapes = [(p.train.global_batch(0, p.phase.batch_size)["input_ids"].shape,
             p.eval.global_batch(0, p.phase.batch_size)["masked_ids"].shape) for p in phased]
  assert shapes == [((8, 32), (8, 5)), ((4, 64), (4, 10))]  # predictions scale with the length
  with open(os.path.join(workdir, "corpus.json")) as f:
    assert {"sentence_blocks-32", "sentence_blocks-64"} <= set(json.load(f))


def one_sentence(error):
  text = str(error.value)
  assert "\n" not in text and text.endswith("."), text
  return text


def refusal(config):
  with pytest.raises(UserError) as e:
    families.validate(config)
  return one_sentence(e)


def test_mistakes_in_train_phases_are_one_sentence_each(tokenizer_dir):
  c = lambda **o: tiny_config(tokenizer_dir, **{"train.steps": STEPS, "train.phases": PHASES, **o})
  assert "which is not SEQ_LEN[xBATCH]:STEPS" in refusal(c(**{"train.phases": "32x:6,64:4"}))
  assert "needs a positive seq_len" in refusal(c(**{"train.phases": "32:0,64:10"}))
  assert ("add up to 10 steps but the learning-rate schedule has 12 (train.steps)"
          in refusal(c(**{"train.steps": 12})))
  assert ("schedule has 20 (train.schedule_steps)"
          in refusal(c(**{"train.schedule_steps": 20})))
  assert "train.steps=12 runs past the 10 steps" in refusal(
      c(**{"train.steps": 12, "train.schedule_steps": 10}))
  assert ("phase 2's seq_len 128 is not in [8, 64], the lengths model.max_position_embeddings"
          in refusal(c(**{"train.phases": "32:6,128:4"})))
  assert "phase 2's batch 6 is not divisible by train.grad_accum_steps=4" in refusal(
      c(**{"train.phases": "32x8:6,64x6:4", "train.grad_accum_steps": 4}))
  from configs import elmo, finetune_glue
  assert "data.stateful carries the LSTM state" in refusal(
      override(elmo.get_config("tiny"), {"train.phases": "10:100,20:200",
                                          "train.steps": 300}))
  assert "is for pre-training" in refusal(override(finetune_glue.get_config("sst2"), {
      "train.phases": "64:500,128:500", "train.steps": 1000}))
  config_lib.validate(c())  # and the right phases pass


def test_a_resume_with_other_phases_is_refused(straight, tokenizer_dir):
  corpus, _, _, workdir = straight
  with pytest.raises(UserError) as e:
    train.run(phased_config(tokenizer_dir, corpus, **{"train.phases": "32x8:5,64x4:5"}), workdir)
  assert "checkpoints were trained with train.phases='32x8:6,64x4:4'" in one_sentence(e)


def _read_only(path):
  """Makes `path` refuse new files, even to root (chattr +i); returns how to undo it."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return lambda: os.chmod(path, 0o755)
  if subprocess.run(["chattr", "+i", path], capture_output=True).returncode:
    pytest.skip("running as root on a file system without chattr +i")
  return lambda: subprocess.run(["chattr", "-i", path], check=True)


def test_a_read_only_corpus_without_a_phase_material_is_refused_up_front(straight, tokenizer_dir,
                                                                         tmp_path):
  _, corpus_32_only, _, _ = straight
  undo = _read_only(corpus_32_only)
  try:
    with pytest.raises(UserError) as e:
      train.run(phased_config(tokenizer_dir, corpus_32_only), str(tmp_path / "run"))
  finally:
    undo()
  text = one_sentence(e)
  assert "holds no sentence_blocks examples for seq_len 64 (phase 2 of train.phases)" in text
  assert f"python -m lm_jax.prepare --config=<the corpus's config> --out={corpus_32_only} " \
         "--config.data.seq_len=64" in text
  assert not os.path.exists(tmp_path / "run" / "checkpoints")
