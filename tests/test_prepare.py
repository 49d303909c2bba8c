"""Prepared corpora: slices, byte-identical shards for any workers or tasks, resume,
refusals, NSP statistics, process-count independence, and every family training
from a prepared directory."""
import gzip
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import (REPO, SHARD_MB, TINY_FLAGS, cli_args, cli_prepare, files_config, override,
                      prepared_examples, tiny_config, tree)
from lm_jax import families, train
from lm_jax.data import elmo_vocab, packing, prepare, prepared, slices, sources, tokenizer
from lm_jax.errors import UserError
from lm_jax.validate import family_config


def quiet(_):
  pass


# ---------------------------------------------------------------------------
# Slices
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shard_bytes", [101, 4096, 30_000, 10**9])
def test_slices_hold_every_document_once_whatever_the_cut(tmp_path, shard_bytes):
  paragraphs = [p for doc in sources.embedded_documents("eval")[:3] for p in doc.split("\n")]
  (tmp_path / "a.txt").write_text("\n \n".join(p.replace(". ", ".\n", 2) for p in paragraphs[:150]))
  (tmp_path / "b.txt").write_text("\n".join(paragraphs[150:300]) + "\n")
  (tmp_path / "c.txt.gz").write_bytes(gzip.compress("\n\n\n".join(paragraphs[300:]).encode()))
  (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs[:50]))
  (tmp_path / "e.txt").write_text("\r\n\r\nA\r\nB.\r\n  \r\n\r\nC\r\n")
  pattern = str(tmp_path / "*")
  cut = slices._file_plan(sources.matching_sizes(pattern), shard_bytes)
  assert len(cut) == 1 if shard_bytes == 10**9 else len(cut) > 2
  assert [d for s in cut for d in slices.documents(s)] == whole_file_documents(pattern)


def whole_file_documents(pattern):
  """The reference the slices must match: each file read whole, then split."""
  docs = []
  for path in sources.matching_files(pattern):
    text = sources.read_text(path)
    if path.endswith((".jsonl", ".jsonl.gz")):
      docs.extend(json.loads(line)["text"] for line in text.splitlines() if line.strip())
    elif re.search(r"\n\s*\n", text):
      docs.extend(" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip())
    else:
      docs.extend(line.strip() for line in text.splitlines() if line.strip())
  return docs


def test_slices_of_the_embedded_corpus_and_tfds():
  c = tiny_config()
  train_docs = [d for s in slices.plan(c.data, "train", 1 << 20) for d in slices.documents(s)]
  assert train_docs == sources.embedded_documents("train")
  assert len(slices.plan(c.data, "eval", 1 << 20)) == 1  # Persuasion
  c = override(c, {"data.tfds_name": "lm1b", "data.tfds_eval_split": "test", "data.max_documents": 30})
  with tfds.testing.mock_data(num_examples=50, policy=tfds.testing.MockPolicy.USE_CODE):
    cut = slices.plan(c.data, "train", 3 * slices._TFDS_GUESS_BYTES)
    docs = [d for s in cut for d in slices.documents(s)]
    source = sources.tfds_source("lm1b", "train")
    whole = [str(source[i]["text"]) for i in range(30)]  # the mock's texts are str
  assert len(cut) == 10 and docs == [d for d in whole if d.strip()]
  assert [(s["parts"][0]["start"], s["parts"][0]["end"]) for s in cut][-1] == (27, 30)


# ---------------------------------------------------------------------------
# Determinism, resume
# ---------------------------------------------------------------------------

def test_workers_and_tasks_give_byte_identical_shards(one_worker, tmp_path, tokenizer_dir, text_dir):
  expected = tree(one_worker)
  assert any(k.endswith(".array_record") for k in expected)
  two = tmp_path / "two_workers"
  out = cli_prepare(two, tokenizer_dir, text_dir, "--workers=2")
  assert "MB/s, ETA" in out and "Prepared" in out
  assert tree(two) == expected
  tasks = tmp_path / "tasks"
  first = cli_prepare(tasks, tokenizer_dir, text_dir, "--workers=1", "--task=0/2")
  assert "left to other tasks" in first and not (tasks / "documents" / "manifest.json").exists()
  cli_prepare(tasks, tokenizer_dir, text_dir, "--workers=1", "--task=1/2")
  assert tree(tasks) == expected


def test_prepare_makes_the_material_of_every_phase_from_one_tokenization(one_worker, tmp_path,
                                                                         tokenizer_dir, text_dir):
  out = tmp_path / "phased"
  cli_prepare(out, tokenizer_dir, text_dir, "--config.train.phases=64:10,32:10")
  made = tree(out)
  for seq_len in (64, 32):
    assert f"sentence_blocks-{seq_len}/manifest.json" in made
  assert {k: v for k, v in made.items() if not k.startswith("sentence_blocks-32")} == tree(one_worker)


def test_a_killed_prepare_resumes_and_a_rerun_skips_committed_shards(one_worker, tmp_path,
                                                                      tokenizer_dir, text_dir):
  expected = tree(one_worker)
  out = tmp_path / "corpus"
  os.makedirs(out)
  for rel, data in expected.items():  # as a killed run leaves it: no manifests, a shard cut short
    if not rel.endswith("manifest.json"):
      os.makedirs(os.path.dirname(out / rel), exist_ok=True)
      (out / rel).write_bytes(data)
  n = len(prepared.open(one_worker).manifest["splits"]["train"]["records"])
  cut, kept = (out / "documents" / prepared.shard_name("train", k, n) for k in (2, 1))
  (cut.parent / (cut.name + ".done")).unlink()
  (cut.parent / (cut.name + ".array_record")).write_bytes(b"half")
  (out / "sentence_blocks-64" / "eval-00000-of-00001.done").unlink()
  kept = cut.parent / (kept.name + ".array_record")
  mtime = kept.stat().st_mtime_ns
  lines = []
  prepare.prepare(files_config(tokenizer_dir, text_dir), str(out), families.FAMILIES["bert"].examples,
                  tokenizer=tokenizer_dir, log=lines.append)
  assert "already committed; resuming" in lines[0] and len(lines) == 4  # 2 shards, the summary
  assert tree(out) == expected
  assert kept.stat().st_mtime_ns == mtime  # a committed shard is not written again
  again = []
  prepare.prepare(files_config(tokenizer_dir, text_dir), str(out), families.FAMILIES["bert"].examples,
                  tokenizer=tokenizer_dir, log=again.append)
  assert again == []  # nothing to do


def test_another_seq_len_reuses_the_documents(one_worker, tokenizer_dir, text_dir):
  before = tree(one_worker)
  c = files_config(tokenizer_dir, text_dir, **{"data.seq_len": 32})
  summary = prepare.prepare(c, one_worker, families.FAMILIES["bert"].examples,
                            tokenizer=tokenizer_dir, log=quiet)
  assert "no input read" in summary["line"] and "MB/s" not in summary["line"]
  data = prepared_examples(c, one_worker)
  after = tree(one_worker)
  assert {k: v for k, v in after.items() if not k.startswith("sentence_blocks-32/")} == before
  assert data.example(0)["input_ids"].shape == (32,)


# ---------------------------------------------------------------------------
# Refusals: one sentence each
# ---------------------------------------------------------------------------

def one_sentence(error):
  text = str(error.value)
  assert "\n" not in text and text.endswith("."), text
  return text


def test_refusals_are_one_sentence(one_worker, tmp_path, tokenizer_dir, text_dir):
  corpus = prepared.open(one_worker)
  with pytest.raises(UserError) as e:
    corpus.material("causal_windows", 64, "train")
  assert "holds no causal_windows examples for data.seq_len=64" in one_sentence(e)
  with pytest.raises(UserError) as e:
    prepared.open(tmp_path)
  assert "is not a prepared corpus" in one_sentence(e)
  other_tok = tmp_path / "other_tokenizer"
  tokenizer.train([s for d in sources.embedded_documents("eval") for s in packing.split_sentences(d)],
                  str(other_tok), 500)
  with pytest.raises(UserError) as e:  # data.prepared cut with another tokenizer than data.tokenizer
    train.run(files_config(str(other_tok), text_dir, **{"data.prepared": one_worker,
                                                        "model.vocab_size": 500}), str(tmp_path / "w1"))
  assert "was tokenized with another tokenizer than" in one_sentence(e)
  with pytest.raises(UserError) as e:  # the same output directory, other input
    prepare.prepare(files_config(tokenizer_dir, text_dir, **{"data.eval_files": ""}), one_worker,
                    families.FAMILIES["bert"].examples, log=quiet)
  assert "was prepared from other input (eval_files=" in one_sentence(e)
  with pytest.raises(UserError) as e:  # a word corpus for ELMo is not a piece corpus
    prepare.prepare(files_config(tokenizer_dir, text_dir), one_worker,
                    families.FAMILIES["elmo"].examples, log=quiet)
  assert "holds documents for a tokenizer" in one_sentence(e)


def test_a_changed_corpus_is_refused_on_resume(tmp_path, tokenizer_dir, text_dir):
  corpus = str(tmp_path / "corpus")
  bert = families.FAMILIES["bert"].examples
  prepare.prepare(files_config(tokenizer_dir, text_dir), corpus, bert, tokenizer=tokenizer_dir,
                  log=quiet)
  c = files_config(tokenizer_dir, text_dir, **{"data.prepared": corpus, "train.steps": 2,
                                               "train.eval_every": 0, "train.checkpoint_every": 2})
  workdir = str(tmp_path / "run")
  train.run(c, workdir)
  assert set(json.load(open(os.path.join(workdir, prepared.PIN_FILE)))) == {"documents",
                                                                          "sentence_blocks-64"}
  # The corpus prepared again with other shards: the resumed run would read other batches.
  shutil.rmtree(corpus)
  prepare.prepare(files_config(tokenizer_dir, text_dir, **{"data.shard_mb": 0.5}), corpus, bert,
                  tokenizer=tokenizer_dir, log=quiet)
  with pytest.raises(UserError) as e:
    train.run(override(c, {"train.steps": 4}), workdir)
  assert "is not the one this run started on" in one_sentence(e)


# ---------------------------------------------------------------------------
# Examples read from a prepared corpus
# ---------------------------------------------------------------------------

def test_nsp_label_balance_and_lengths(one_worker, tokenizer_dir, text_dir):
  c = files_config(tokenizer_dir, text_dir, **{"data.seq_len": 128, "data.max_predictions_per_seq": 20})
  data = prepared_examples(c, one_worker)
  batch = data.global_batch(0, 2000)
  labels = batch["nsp_labels"]
  assert abs(labels.mean() - c.data.nsp_probability) < 0.04
  types, mask = batch["token_type_ids"], batch["attention_mask"]
  a_len = (mask * (1 - types)).sum(-1) - 2  # [CLS] A [SEP]
  b_len = (mask * types).sum(-1) - 1        # B [SEP]
  assert (a_len >= 1).all() and (b_len >= 1).all() and (a_len + b_len <= 125).all()
  # NotNext B is cut to the true continuation's length: lengths do not give the label away.
  for lengths in (a_len, b_len):
    is_next, not_next = lengths[labels == 0], lengths[labels == 1]
    assert abs(is_next.mean() - not_next.mean()) < 0.05 * is_next.mean() + 2, (is_next.mean(),
                                                                                not_next.mean())
  assert abs(np.median(b_len[labels == 0]) - np.median(b_len[labels == 1])) <= 8


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_another_process_count_sees_the_same_global_batches(family, tmp_path_factory, tokenizer_dir):
  config = family_config(family, 4, 4, "" if family == "elmo" else tokenizer_dir)
  corpus = tmp_path_factory.getbasetemp() / ("corpus_words" if family == "elmo" else "corpus_pieces")
  data = prepared_examples(config, str(corpus))
  batch = 8
  whole = next(data.batches(batch, 3, 4, threads=1))
  halves = [next(data.batches(batch, 3, 4, process_index=p, process_count=2, threads=1))
            for p in range(2)]
  again = prepared_examples(config, str(corpus)).global_batch(3, batch)  # another process
  for key, value in whole.items():
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), value)
    np.testing.assert_array_equal(again[key], value)
  nothing = set(whole) - {"nsp_labels", "sop_labels"}  # a later epoch reshuffles
  later = data.global_batch(3 + len(data.records) // batch, batch)
  assert any(not np.array_equal(later[k], whole[k]) for k in nothing)


def test_stateful_elmo_rows_continue_within_chunks(tmp_path):
  config = override(family_config("elmo", 4, 4), {"data.stateful": True, "data.stream_chunk": 8,
                                                  "model.vocab_size": 100_000})  # no <UNK>
  data = prepared_examples(config, str(tmp_path))
  vocab, rows = data.tokenizer, 16
  per_row = data.windows_per_epoch(rows)
  a, b = data.global_batch(4, rows), data.global_batch(5, rows)
  continued = 0
  for r in range(rows):
    if (r * per_row + 5) % 8:  # batch 5 is not the first window of a chunk in row r
      assert data._window(5 * rows + r) == data._window(4 * rows + r) + 1
      last = vocab.words[a["next_ids"][r, -1]]  # row r of batch 5 starts where batch 4 stopped
      np.testing.assert_array_equal(b["chars"][r, 0], vocab.chars([last])[0])
      continued += 1
  assert continued >= rows // 2
  # The chunks are permuted: every window once per epoch.
  windows = [data._window(step * rows + r) for step in range(per_row) for r in range(rows)]
  assert len(set(windows)) == len(windows) == per_row * rows


def test_elmo_words_keep_oov_characters(tmp_path):
  config = override(family_config("elmo", 4, 4), {"model.vocab_size": 50, "data.stateful": False})
  data = prepared_examples(config, str(tmp_path))
  vocab = data.tokenizer
  assert vocab.vocab_size == 50 and vocab.words[:3] == list(elmo_vocab.SPECIALS)
  e = data.example(0)
  unk = e["next_ids"][:-1] == vocab.unk_id  # rare words are <UNK> for the softmax ...
  assert unk.any()
  spelled = e["chars"][1:][unk]  # ... and keep their own characters
  assert not (spelled == vocab.chars([elmo_vocab.UNK])[0]).all(-1).any()


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_every_family_trains_from_a_prepared_directory(family, tmp_path_factory, tokenizer_dir):
  config = family_config(family, 2, 2, "" if family == "elmo" else tokenizer_dir)
  corpus = tmp_path_factory.getbasetemp() / ("corpus_words" if family == "elmo" else "corpus_pieces")
  prepared_examples(config, str(corpus))  # (shared with the test above)
  workdir = str(tmp_path_factory.mktemp(family))
  train.run(override(config, {"data.prepared": str(corpus), "train.eval_every": 2,
                              "train.eval_steps": 1}), workdir)
  lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [m["step"] for m in lines if "loss" in m] == [1, 2] and "eval_loss" in lines[-1]
  assert not os.path.exists(os.path.join(workdir, "data"))  # read there, not prepared again
  assert (prepared.files_sha(prepared_tok_files(workdir, config)) ==
          prepared.open(str(corpus)).tokenizer_sha)


def prepared_tok_files(workdir, config):
  return prepare.tokenizer_files(os.path.join(workdir, "tokenizer"),
                                 families.family(config.model).examples.WORDS, config)
