"""Shared fixtures: a tokenizer trained once, and tiny configs for fast runs."""
import os
import subprocess
import sys

import tempfile

import pytest

# XLA's compiled programs, kept on disk and shared by every test process and the
# subprocesses they start (set before jax is imported; os.environ is inherited):
# the tiny models compile the same programs in many tests.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(),
                                                                "lm_jax_tests_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lm_jax.config import override  # pylint: disable=g-import-not-at-top,unused-import (tests import it from here)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
  """An 8000-piece tokenizer trained on the embedded corpus (~2 s, once)."""
  from lm_jax.data import packing, sources, tokenizer
  out = tmp_path_factory.mktemp("tokenizer")
  sentences = [s for d in sources.embedded_documents("train") for s in packing.split_sentences(d)]
  tokenizer.train(sentences, str(out), 8000)
  return str(out)


def tiny_config(tokenizer_dir=None, **overrides):
  """configs/bert_base.py:tiny, smaller still: a step takes milliseconds on CPU.

  `overrides` are dotted keys, e.g. tiny_config(tok, **{"train.steps": 20}).
  """
  from configs import bert_base
  c = bert_base.get_config("tiny")
  c.model.update(hidden_size=64, intermediate_size=128, max_position_embeddings=64)
  c.data.update(seq_len=64, max_predictions_per_seq=10, tokenizer=tokenizer_dir or "")
  c.train.update(steps=20, batch_size=8, log_every=1, eval_every=10, eval_steps=2,
                 checkpoint_every=10, warmup_steps=5)
  return override(c, overrides)


def cli_args(config_overrides):
  """`--config.KEY=VALUE` flags that reproduce tiny_config() on the command line."""
  return [f"--config.{k}={v}" for k, v in config_overrides.items()]


TINY_FLAGS = {
    "model.hidden_size": 64, "model.intermediate_size": 128,
    "model.max_position_embeddings": 64, "data.seq_len": 64,
    "data.max_predictions_per_seq": 10, "train.steps": 20, "train.batch_size": 8,
    "train.log_every": 1, "train.eval_every": 10, "train.eval_steps": 2,
    "train.checkpoint_every": 10, "train.warmup_steps": 5,
}


def run_main(workdir, *extra, env=None, timeout=300, **popen):
  """Runs `python -m lm_jax.main` on the tiny config in a subprocess."""
  cmd = [sys.executable, "-m", "lm_jax.main", "--config=" + os.path.join(REPO, "configs/bert_base.py:tiny"),
         f"--workdir={workdir}", *cli_args(TINY_FLAGS), *extra]
  full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
  return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
                        timeout=timeout, **popen)


def split_documents(data, split="train"):
  """The documents of a split as prepare reads them (data/slices.py), in order."""
  from lm_jax.data import slices
  return [d for s in slices.plan(data, split, 1 << 30) for d in slices.documents(s)]


def prepared_examples(config, corpus_dir, split="train", seed=None):
  """The config family's Examples of `split` over its input (the embedded corpus by
  default) prepared into `corpus_dir` with data.tokenizer; the documents are made
  once and shared by later layouts and seq_lens in the same directory."""
  from lm_jax import families
  from lm_jax.data import elmo_vocab, prepare, prepared, tokenizer
  examples = families.family(config.model).examples
  prepare.prepare(config, corpus_dir, examples, tokenizer=config.data.tokenizer, log=lambda _: None)
  corpus = prepared.open(corpus_dir)
  tok = (elmo_vocab.read(corpus.tokenizer_dir, config.model.max_characters_per_token)
         if examples.WORDS else tokenizer.load(corpus.tokenizer_dir))
  material = corpus.material(examples.LAYOUT, config.data.seq_len, split)
  return examples(material, tok, config.data, config.seed if seed is None else seed)


# ---------------------------------------------------------------------------
# Text files in every input format, and one corpus prepared from them
# ---------------------------------------------------------------------------

SHARD_MB = 0.25  # several shards from the text files, byte ranges cut inside them


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
  """About 2 MB of Austen in every input format: paragraphs, lines, .gz, .jsonl."""
  import gzip
  import json
  from lm_jax.data import sources
  d = tmp_path_factory.mktemp("text")
  docs = sources.embedded_documents("train")
  paragraphs = [p for doc in docs for p in doc.split("\n")]
  (d / "a_paragraphs.txt").write_text("\n\n".join(p.replace(". ", ".\n", 3) for p in paragraphs[:3000]) + "\n")
  (d / "b_lines.txt").write_text("\n".join(paragraphs[3000:6000]) + "\n")
  (d / "c_small.txt").write_text("A tiny file.\n\nWith two documents.\n")
  (d / "d_gzipped.txt.gz").write_bytes(gzip.compress("\n\n".join(paragraphs[6000:8000]).encode()))
  (d / "e_docs.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs[8000:9000]))
  (d / "held_out.txt").write_text("\n\n".join(sources.embedded_documents("eval")[:4]))
  return d


def files_config(tokenizer_dir, text_dir, **overrides):
  return tiny_config(tokenizer_dir, **{"data.files": f"{text_dir}/[a-e]_*",
                                       "data.eval_files": f"{text_dir}/held_out.txt",
                                       "data.shard_mb": SHARD_MB, **overrides})


def cli_prepare(out, tokenizer_dir, text_dir, *extra, env=None, timeout=600):
  """`python -m lm_jax.prepare` of files_config's input; text_dir may be a gs:// URL."""
  flags = {**TINY_FLAGS, "data.files": f"{text_dir}/[a-e]_*",
           "data.eval_files": f"{text_dir}/held_out.txt", "data.shard_mb": SHARD_MB,
           "data.tokenizer": tokenizer_dir}
  r = subprocess.run([sys.executable, "-m", "lm_jax.prepare", f"--config={REPO}/configs/bert_base.py:tiny",
                      f"--out={out}", *cli_args(flags), *extra], cwd=REPO, capture_output=True,
                     text=True, timeout=timeout, env=dict(env or os.environ, PYTHONPATH=REPO))
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


@pytest.fixture(scope="module")  # test_prepare adds material to it
def one_worker(tmp_path_factory, tokenizer_dir, text_dir):
  """text_dir prepared for BERT by one process, in this one."""
  from lm_jax import families
  from lm_jax.data import prepare
  out = str(tmp_path_factory.mktemp("one_worker"))
  summary = prepare.prepare(files_config(tokenizer_dir, text_dir), out,
                            families.FAMILIES["bert"].examples, tokenizer=tokenizer_dir,
                            log=lambda _: None)
  assert summary["shards"]["train"] >= 6 and summary["examples"] > 1000
  return out


def tree(directory):
  """{relative path: bytes} of every file under `directory`."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out
