r"""Prepare speed, side by side with HF datasets (lm_jax.bench --mode=prepare).

  python -m lm_jax.bench --mode=prepare --config=bert_base.py:tiny [--corpus_mb=64] [--peer]
  python -m lm_jax.bench --mode=prepare --config=bert_base.py:tiny \
      --config.data.files=GLOB --config.data.tokenizer=DIR --peer

The input is data.files, else --corpus_mb MB of generated text: paragraphs of
the embedded Austen novels drawn with a fixed seed, 30 to a document, one
document per line. The tokenizer is data.tokenizer, else a sentencepiece model
of model.vocab_size trained on the first data.tokenizer_sample_mb of it
(at most 8 MB), before the clock starts. Both sides run on --workers
processes (0: all cores).

  ours   lm_jax.prepare's own work, timed from the call to the manifests:
         sentence splitting, tokenizing, the documents shards, the family's
         example material (BERT: sentence blocks); the input is cut into at
         least two shards per worker so that every worker has work.
  peer   (--peer) what HF's run_mlm.py does, in a subprocess: a `tokenizers`
         WordPiece of the same vocabulary size (BERT's normalizer and
         pre-tokenizer; trained before the clock starts), then
         `load_dataset("text")`, `map(tokenize, batched=True, num_proc=workers)`
         and run_mlm's group_texts `map` into data.seq_len blocks, the
         cache in a temporary directory. Needs `pip install datasets`.

Both print MB/s of input text and the CPU seconds spent (worker processes
included: on a machine that others load, the fairer measure), then one ratio
line: lm_jax's MB/s over datasets', and datasets' CPU seconds over lm_jax's.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from lm_jax import cli, families
from lm_jax.data import packing, prepare, sources, tokenizer as tokenizer_lib
from lm_jax.errors import UserError

_DOCUMENT_PARAGRAPHS = 30  # paragraphs per generated document
_TOKENIZER_SAMPLE_MB = 8  # at most this much text trains the bench's tokenizers


def write_corpus(path, megabytes, seed=0):
  """Writes about `megabytes` MB of Austen paragraphs, drawn with `seed`, one document a line."""
  paragraphs = [p for d in sources.embedded_documents("train") for p in d.split("\n")]
  rng, size, target = np.random.default_rng(seed), 0, megabytes * 2**20
  with open(path, "w", encoding="utf-8") as f:
    while size < target:
      line = " ".join(paragraphs[i] for i in rng.integers(0, len(paragraphs),
                                                          _DOCUMENT_PARAGRAPHS)) + "\n"
      f.write(line)
      size += len(line.encode("utf-8"))


def cpu_seconds():
  """CPU seconds of this process and its finished children (worker processes)."""
  me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
      resource.RUSAGE_CHILDREN)
  return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _sample_lines(files, megabytes):
  """The first lines of the input, `megabytes` MB in all: what the tokenizers learn from."""
  taken, limit = 0, megabytes * 2**20
  for path in files:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if taken >= limit:
          return
        taken += len(line)
        yield line


def prepare_mode(config, peer=False, corpus_mb=64.0, workers=0, emit=print):
  """Times lm_jax's prepare (and with `peer` HF datasets') on the config's input; emits
  one dict per result."""
  examples = families.get(config.model).examples
  if families.get(config.model).labelled:
    raise UserError("--mode=prepare measures pre-training corpora; a fine-tuning config reads "
                    "its labelled records in memory.")
  if peer and examples.WORDS:
    raise UserError("The HF datasets peer tokenizes into pieces; ELMo's word prepare has no peer "
                    "(run --mode=prepare without --peer).")
  workers = workers or os.cpu_count() or 1
  with tempfile.TemporaryDirectory(prefix="lm_jax_bench_prepare_") as tmp:
    config = config.copy_and_resolve_references()
    if not config.data.files:
      config.data.files = os.path.join(tmp, "corpus.txt")
      write_corpus(config.data.files, corpus_mb)
      config.data.eval_files = ""
    sized = sources.matching_sizes(config.data.files)
    files, corpus_bytes = [path for path, _ in sized], sum(size for _, size in sized)
    sample_mb = min(config.data.tokenizer_sample_mb, _TOKENIZER_SAMPLE_MB)
    tok_dir = config.data.tokenizer
    if not tok_dir and not examples.WORDS:
      tok_dir = os.path.join(tmp, "tokenizer")
      sentences = (s for line in _sample_lines(files, sample_mb)
                   for s in packing.split_sentences(line))
      tokenizer_lib.train(sentences, tok_dir, config.model.vocab_size)
    # At least two shards per worker: a real corpus has hundreds of data.shard_mb.
    config.data.shard_mb = min(config.data.shard_mb, corpus_bytes / 2**20 / (2 * workers))

    start, cpu = time.perf_counter(), cpu_seconds()
    summary = prepare.prepare(config, os.path.join(tmp, "prepared"), examples, workers=workers,
                              tokenizer=tok_dir, start_method="fork", log=lambda _: None)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    ours = dict(bench="lm_jax_prepare", mb_per_s=round(corpus_bytes / 2**20 / seconds, 2),
                seconds=round(seconds, 2), cpu_s=round(cpu, 2),
                corpus_mb=round(corpus_bytes / 2**20, 1), workers=workers, shards=summary["shards"]["train"] + summary["shards"]["eval"],
                documents=summary["documents"], tokens=summary["tokens"],
                examples=summary["examples"], layout=examples.LAYOUT, cpus=os.cpu_count())
    emit(ours)
    if not peer:
      return
    spec = dict(files=files, vocab_size=config.model.vocab_size, seq_len=config.data.seq_len,
                workers=workers, sample_mb=sample_mb, cache_dir=os.path.join(tmp, "hf_cache"))
    proc = subprocess.run([sys.executable, "-c", "import sys; from lm_jax import bench_prepare; "
                           "bench_prepare.peer_main(sys.argv[1])", json.dumps(spec)],
                          capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", HF_DATASETS_OFFLINE="1"))
    if proc.returncode != 0:
      tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
      cli.fail(f"The HF datasets peer failed: {tail[0]} (--peer needs `pip install datasets`).")
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    emit(theirs)
    emit(dict(bench="ratio", workload="prepare",
              lm_jax_over_datasets=round(ours["mb_per_s"] / theirs["mb_per_s"], 2),
              cpu_s_datasets_over_lm_jax=round(theirs["cpu_s"] / ours["cpu_s"], 2)))


def peer_main(spec_json):
  """HF datasets + tokenizers as run_mlm.py uses them; prints one JSON line."""
  # Each map process tokenizes on its own core, as num_proc means.
  os.environ["TOKENIZERS_PARALLELISM"] = "false"
  import datasets  # pylint: disable=g-import-not-at-top
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import models, normalizers, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top
  spec = json.loads(spec_json)
  datasets.disable_progress_bars()
  tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=False)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.train_from_iterator(_sample_lines(spec["files"], spec["sample_mb"]), trainers.WordPieceTrainer(
      vocab_size=spec["vocab_size"], special_tokens=list(tokenizer_lib.SPECIAL_TOKENS)))
  cls_id, sep_id, block = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]"), spec["seq_len"]

  def tokenize(batch):  # run_mlm.py's tokenize_function: [CLS] text [SEP]
    return {"input_ids": [[cls_id, *e.ids, sep_id] for e in tok.encode_batch(batch["text"])]}

  def group_texts(batch):  # run_mlm.py's group_texts: concatenated, cut into blocks
    ids = [i for row in batch["input_ids"] for i in row]
    usable = len(ids) // block * block
    return {"input_ids": [ids[i:i + block] for i in range(0, usable, block)]}

  start, cpu = time.perf_counter(), cpu_seconds()
  ds = datasets.load_dataset("text", data_files=spec["files"], split="train",
                             cache_dir=spec["cache_dir"])
  loaded = time.perf_counter()
  ds = ds.map(tokenize, batched=True, num_proc=spec["workers"], remove_columns=["text"])
  tokenized = time.perf_counter()
  ds = ds.map(group_texts, batched=True, num_proc=spec["workers"])
  seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
  corpus_bytes = sum(os.path.getsize(f) for f in spec["files"])
  print(json.dumps(dict(
      bench="hf_datasets_prepare", mb_per_s=round(corpus_bytes / 2**20 / seconds, 2),
      seconds=round(seconds, 2), cpu_s=round(cpu, 2), load_s=round(loaded - start, 2),
      tokenize_s=round(tokenized - loaded, 2), group_s=round(start + seconds - tokenized, 2),
      corpus_mb=round(corpus_bytes / 2**20, 1), workers=spec["workers"], examples=len(ds),
      vocab_size=tok.get_vocab_size(), datasets=datasets.__version__,
      tokenizers=tokenizers.__version__)), flush=True)
