"""Preparing a corpus: input slices -> documents shards -> example material shards.

    prepare(config, out, examples)      # examples: the family's pipeline.Examples class

1. Plan: cut each split's input into slices (data/slices.py: file sizes,
   tfds lengths, the embedded novels; nothing is read), about data.shard_mb
   each. Slice k of a split becomes shard k of both levels.
2. Tokenizer: a copy of `tokenizer` (a directory), else one trained on a
   deterministic sample of the training text (the first documents of every
   slice, data.tokenizer_sample_mb in all); ELMo's word vocabulary likewise.
   It goes to OUT/tokenizer/, and documents/plan.json (the plan and the
   tokenizer's hash) is written after it.
3. Shards: for each slice, its documents are tokenized into a documents shard
   (one record per document: its sentences' lengths and token ids; ELMo: its
   sentences' words), then `examples.pack` turns that shard alone into the
   material shard of (examples.LAYOUT, data.seq_len). Shards run in
   `workers` processes; with task (i, n), this process does the shards
   k with k % n == i (k counting train shards, then eval shards). With
   beam_options, the shards are one Apache Beam pipeline's elements instead
   (Dataflow, Flink, Spark, or Beam's DirectRunner), mapped by the same
   function.
4. Manifests: whoever finds every shard committed writes the documents
   manifest, then the material's (data/prepared.py has the layout).

Each shard is a pure function of its slice and the tokenizer, so the output
is byte-identical for any number of workers or tasks; a rerun skips
committed shards, so a killed prepare resumes where it stopped.
"""
import itertools
import json
import multiprocessing
import os
import shutil
import tempfile
import time

import numpy as np
from etils import epath

from lm_jax import paths
from lm_jax.data import elmo_vocab, packing, prepared, slices, sources
from lm_jax.data import tokenizer as tokenizer_lib
from lm_jax.errors import UserError

SPLITS = ("train", "eval")
_ENCODE_BATCH_BYTES = 1 << 20  # text tokenized per call (sentencepiece's batch encode)
_AUTO_POOL_BYTES = 64 << 20  # workers=0: in-process below this much input to prepare
_PLAN_WAIT_S = 3600  # --task i/n, i > 0: how long to wait for task 0's plan


def _print(line):
  print(line, flush=True)


def prepare(config, out, examples, *, workers=1, task=(0, 1), tokenizer="", start_method="spawn",
            beam_options=None, log=_print):
  """Prepares (or finishes preparing) the corpus the config names into `out`, with the
  material `examples` reads; returns a summary dict, or None when other tasks still
  have shards to do. workers=0: all cores for a big input, else this process. Worker
  processes start by `start_method` ("fork" only before JAX has started threads).
  beam_options (a list of Beam pipeline flags, [] for Beam's DirectRunner): the shards
  run as one Apache Beam pipeline instead, `workers` unused."""
  data, out = config.data, epath.Path(out)
  docs_dir, mat_dir = out / prepared.DOCUMENTS, out / prepared.material_dir(examples.LAYOUT,
                                                                           data.seq_len)
  spec = _jsonable(slices.source_spec(data))
  manifest = prepared.read_json(docs_dir / prepared.MANIFEST)
  if manifest is not None:
    _check_same_input(out, manifest["source"], spec)
    if manifest["words"] != examples.WORDS:
      raise UserError(f"{out} holds documents for {'ELMo' if manifest['words'] else 'a tokenizer'}"
                      " but this config's family needs the other kind; use another --out.")
    _check_tokenizer(manifest["tokenizer_sha"], tokenizer, examples.WORDS, config, out)
    if prepared.read_json(mat_dir / prepared.MANIFEST) is not None:  # nothing to do
      return _summary(prepared.open(out), examples.LAYOUT, data.seq_len, {}, 0.0)
  pipeline = _beam_pipeline(beam_options) if beam_options is not None else None  # before any work
  if not (data.shard_mb > 0 and data.tokenizer_sample_mb > 0):
    raise UserError(f"data.shard_mb={data.shard_mb} and data.tokenizer_sample_mb="
                    f"{data.tokenizer_sample_mb} must be positive.")
  start = time.perf_counter()
  if manifest is not None:  # new material from the documents alone: the input is not read
    record = prepared.read_json(docs_dir / prepared.PLAN)
  else:
    sources.check_inputs(data)  # a missing or unreadable file is one sentence before any work
    plan = {s: slices.plan(data, s, max(1, int(data.shard_mb * 2**20))) for s in SPLITS}
    if not plan["train"]:
      raise UserError("The training corpus is empty; point data.files or data.tfds_name at text "
                      "with at least one non-empty document.")
    record = _jsonable(dict(format=prepared.FORMAT, words=examples.WORDS, source=spec,
                            slices=plan, pretokenized=bool(data.files) and examples.WORDS))
    record = _plan_and_tokenizer(out, record, config, examples.WORDS, tokenizer, task, log)
  plan = record["slices"]
  tok_dir = paths.local_copy(os.fspath(out / prepared.TOKENIZER))

  # Beam's workers may be other machines: they read the tokenizer from `out` themselves.
  job_tok_dir = os.fspath(out / prepared.TOKENIZER) if pipeline is not None else tok_dir
  jobs = [dict(out=os.fspath(out), layout=prepared.material_dir(examples.LAYOUT, data.seq_len),
               split=split, k=k, n=len(plan[split]), slice=s, tokenizer=job_tok_dir,
               examples=examples, seq_len=data.seq_len, words=examples.WORDS,
               pretokenized=record["pretokenized"])
          for split in SPLITS for k, s in enumerate(plan[split])]
  mine = [j for g, j in enumerate(jobs) if g % task[1] == task[0]]
  todo = [j for j in mine if not _done(j)]
  progress = _Progress(mine, todo, log)
  if workers == 0:  # auto: worker processes pay off for big inputs only (each imports lm_jax)
    workers = os.cpu_count() if progress.total_bytes >= _AUTO_POOL_BYTES else 1
  if pipeline is not None and todo:
    _run_beam(pipeline, todo, log)
    for job in todo:
      progress.update(_result(job, skipped=False))
  elif workers > 1 and len(todo) > 1:
    with multiprocessing.get_context(start_method).Pool(min(workers, len(todo))) as pool:
      for result in pool.imap_unordered(_shard_job, todo):
        progress.update(result)
  else:
    for job in todo:
      progress.update(_shard_job(job))
  if tok_dir != os.fspath(out / prepared.TOKENIZER):
    shutil.rmtree(tok_dir, ignore_errors=True)

  if not all(_done(j) for j in jobs):
    left = sum(not _done(j) for j in jobs)
    log(f"prepare: task {task[0]}/{task[1]} done; {left} of {len(jobs)} shards are left to "
        "other tasks; the task that finishes last writes the manifests.")
    return None
  corpus = _write_manifests(out, mat_dir, record, jobs, examples.LAYOUT, data.seq_len)
  summary = _summary(corpus, examples.LAYOUT, data.seq_len, progress.totals,
                     time.perf_counter() - start, from_documents=manifest is not None)
  log(summary["line"])
  return summary


# ---------------------------------------------------------------------------
# The plan and the tokenizer
# ---------------------------------------------------------------------------

def _jsonable(value):
  """`value` as it reads back from JSON (tuples become lists), for comparisons."""
  return json.loads(json.dumps(value))


def _check_same_input(out, before, now):
  if before != now:
    key = next(k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
    raise UserError(f"{out} was prepared from other input ({key}={before.get(key)!r}, now "
                    f"{now.get(key)!r}); use another --out (or data.prepared), or the old input.")


def _plan_and_tokenizer(out, record, config, words, tokenizer, task, log):
  """The plan as committed in documents/plan.json (written by task 0, after the tokenizer)."""
  plan_path = out / prepared.DOCUMENTS / prepared.PLAN
  existing = prepared.read_json(plan_path)
  if existing is None and task[0] != 0:
    log(f"prepare: task {task[0]}/{task[1]} waits for task 0 to write {plan_path} ...")
    deadline = time.time() + _PLAN_WAIT_S
    while existing is None:
      if time.time() > deadline:
        raise UserError(f"Task 0 did not write {plan_path} within {_PLAN_WAIT_S} s; start "
                        f"--task=0/{task[1]} with the same flags.")
      time.sleep(5)
      existing = prepared.read_json(plan_path)
  if existing is not None:
    sha = existing.pop("tokenizer_sha")
    if existing != record:
      what = "input" if existing["source"] == record["source"] else "config"
      changed = next(k for k in record if existing.get(k) != record[k])
      raise UserError(f"{out} is being prepared from other {what} (its plan's {changed} differs: "
                      "the files changed, or another data config); finish it with the old input, "
                      "or use another --out.")
    _check_tokenizer(sha, tokenizer, words, config, out)
    return dict(existing, tokenizer_sha=sha)
  tok_out = out / prepared.TOKENIZER
  with tempfile.TemporaryDirectory(prefix="lm_jax_tokenizer_") as tmp:
    if tokenizer:
      files = tokenizer_files(tokenizer, words, config)
    elif words:
      log(f"prepare: building a {config.model.vocab_size}-word ELMo vocabulary from a sample ...")
      sample = _sample(record["slices"]["train"], config.data.tokenizer_sample_mb)
      vocab = elmo_vocab.build(elmo_vocab.tokenized_sentences(sample, record["pretokenized"]),
                               config.model.vocab_size, config.model.max_characters_per_token)
      vocab.save(tmp)
      files = vocab.files()
    else:
      log(f"prepare: training a {config.model.vocab_size}-piece sentencepiece tokenizer on a "
          "sample ...")
      sample = _sample(record["slices"]["train"], config.data.tokenizer_sample_mb)
      files = tokenizer_lib.train((s for d in sample for s in packing.split_sentences(d)), tmp,
                                  config.model.vocab_size).files()
    prepared.copy_files(files, tok_out)
    record = dict(record, tokenizer_sha=prepared.files_sha(files))
  prepared.write_json(plan_path, record)
  return record


def tokenizer_source(config, own, words):
  """The tokenizer a run names: its own (directory `own`) once it has one, else
  data.tokenizer, init.from_hf or init.from_workdir's; "" when none (prepare trains one)."""
  if elmo_vocab.exists(own) if words else tokenizer_lib.exists(own):
    return own
  pretrained_run = config.init.get("from_workdir")
  return (config.data.tokenizer or config.init.get("from_hf", "")
          or (os.path.join(pretrained_run, "tokenizer") if pretrained_run else ""))


def tokenizer_files(directory, words, config):
  """{name: path} of the tokenizer (or ELMo vocabulary) in `directory`."""
  if words:
    return elmo_vocab.read(directory, config.model.max_characters_per_token).files()
  return tokenizer_lib.load(directory).files()


def _check_tokenizer(sha, tokenizer, words, config, out):
  if tokenizer and prepared.files_sha(tokenizer_files(tokenizer, words, config)) != sha:
    raise UserError(f"{out} was tokenized with another tokenizer than {tokenizer}; use the "
                    f"corpus's ({out}/{prepared.TOKENIZER}), or prepare into another --out.")


def _sample(train_slices, megabytes):
  """The first documents of every training slice, `megabytes` in all (a pure function of
  the plan): what a new tokenizer or vocabulary is built from."""
  share = megabytes * 2**20 / len(train_slices)
  for s in train_slices:
    taken = 0
    for doc in slices.documents(s):
      if taken >= share:
        break
      taken += len(doc)
      yield doc


# ---------------------------------------------------------------------------
# One shard (in a worker process)
# ---------------------------------------------------------------------------

def _done(job):
  name = prepared.shard_name(job["split"], job["k"], job["n"])
  return (prepared.committed(epath.Path(job["out"]) / job["layout"], name) is not None and
          prepared.committed(epath.Path(job["out"]) / prepared.DOCUMENTS, name) is not None)


_TOKENIZERS = {}  # per worker process: directory -> tokenizer


def _shard_job(job):
  """Writes the documents shard of job's slice (unless committed), then its material."""
  out, name = epath.Path(job["out"]), prepared.shard_name(job["split"], job["k"], job["n"])
  docs_dir, mat_dir = out / prepared.DOCUMENTS, out / job["layout"]
  tok = None
  if not job["words"]:
    tok = _TOKENIZERS.get(job["tokenizer"]) or tokenizer_lib.load(job["tokenizer"])
    _TOKENIZERS[job["tokenizer"]] = tok
  result = dict(split=job["split"], bytes=slices.size(job["slice"]), skipped=False)
  marker = prepared.committed(docs_dir, name)
  if marker is None:
    counts = dict(tokens=0)
    texts = slices.documents(job["slice"])
    records = (word_records(texts, job["pretokenized"], counts) if job["words"]
               else piece_records(texts, tok, counts))
    marker = dict(counts, records=prepared.write_records(docs_dir, name, records))
    prepared.commit(docs_dir, name, marker)
  else:
    result["skipped"] = True
  if prepared.committed(mat_dir, name) is None:
    documents = (decode_document(r, job["words"]) for r in prepared.shard_records(docs_dir, name))
    count = prepared.write_records(mat_dir, name, job["examples"].pack(documents, job["k"],
                                                                       job["seq_len"], tok))
    prepared.commit(mat_dir, name, dict(records=count))
    result["skipped"] = False
  return dict(result, documents=marker["records"], tokens=marker["tokens"])


def _result(job, skipped):
  """What `_shard_job` returned for a committed shard, from its markers."""
  name = prepared.shard_name(job["split"], job["k"], job["n"])
  marker = prepared.committed(epath.Path(job["out"]) / prepared.DOCUMENTS, name)
  return dict(split=job["split"], bytes=slices.size(job["slice"]), skipped=skipped,
              documents=marker["records"], tokens=marker["tokens"])


def _beam_pipeline(options):
  """An Apache Beam pipeline (the [beam] extra) with `options`, Beam's own flags; one
  UserError when Beam is not installed or refuses them."""
  try:
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--runner=beam needs Apache Beam: pip install 'lm_jax[beam]' (in a venv of "
                    "its own: Beam pins protobuf<7 and pyarrow<26).") from None
  try:
    return beam.Pipeline(options=pipeline_options.PipelineOptions(list(options)))
  except ValueError as e:  # e.g. an unknown runner
    raise UserError(f"Beam refuses these pipeline options ({e}); see --beam_options.") from None


def _run_beam(pipeline, jobs, log):
  """Runs `_shard_job` on every job as the elements of `pipeline`; returns when every
  shard is committed."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top  (_beam_pipeline checked it)
  log(f"prepare: {len(jobs)} shards to a Beam pipeline ({pipeline.runner.__class__.__name__}) ...")
  with pipeline:
    # Reshuffle: the shards spread over the runner's workers instead of fusing with Create.
    _ = (pipeline | beam.Create(jobs) | beam.Reshuffle() | beam.Map(_shard_job))


def _batches(texts, max_bytes):
  """Consecutive texts, about max_bytes at a time."""
  batch, size = [], 0
  for text in texts:
    batch.append(text)
    size += len(text)
    if size >= max_bytes:
      yield batch
      batch, size = [], 0
  if batch:
    yield batch


def piece_records(texts, tok, counts):
  """Documents records: (sentence lengths, token ids), tokenized a batch at a time."""
  for docs in _batches(texts, _ENCODE_BATCH_BYTES):
    sentences = [packing.split_sentences(d) for d in docs]
    ids = tok.encode(list(itertools.chain.from_iterable(sentences)))
    lengths = np.fromiter(map(len, ids), np.int32, len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
    token_at = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    first = 0
    for doc in sentences:
      keep = lengths[first:first + len(doc)]
      tokens = flat[token_at[first]:token_at[first + len(doc)]]
      first += len(doc)
      if len(tokens):
        counts["tokens"] += len(tokens)
        yield prepared.encode_ints(keep[keep > 0], tokens)


def word_records(texts, pretokenized, counts):
  """Documents records for ELMo: sentences of words, a line each."""
  for doc in texts:
    sentences = elmo_vocab.tokenized_sentences([doc], pretokenized)
    if sentences:
      counts["tokens"] += sum(len(s) + 2 for s in sentences)  # with <S> and </S>
      yield "\n".join(" ".join(s) for s in sentences).encode("utf-8")


def decode_document(record, words):
  """A documents record: (sentence lengths, token ids), or (words) a list of sentences."""
  if words:
    return [line.split(" ") for line in record.decode("utf-8").split("\n")]
  return prepared.decode_ints(record)


# ---------------------------------------------------------------------------
# Progress, manifests, summary
# ---------------------------------------------------------------------------

class _Progress:
  """One line per finished shard: documents, MB/s, ETA."""

  def __init__(self, mine, todo, log):
    self.log, self.start = log, time.perf_counter()
    self.total_bytes = sum(slices.size(j["slice"]) for j in todo)
    self.shards, self.done = len(mine), len(mine) - len(todo)
    self.totals = dict(documents=0, tokens=0, bytes=0)
    if todo and self.done:
      log(f"prepare: {self.done} of {self.shards} shards are already committed; resuming.")

  def update(self, result):
    self.done += 1
    for key in self.totals:
      self.totals[key] += result[key]
    seconds = time.perf_counter() - self.start
    rate = self.totals["bytes"] / 2**20 / max(seconds, 1e-9)
    eta = (self.total_bytes - self.totals["bytes"]) / 2**20 / max(rate, 1e-9)
    self.log(f"prepare: {self.done}/{self.shards} shards, {self.totals['documents']:,} documents, "
             f"{self.totals['bytes'] / 2**20:,.0f} of {self.total_bytes / 2**20:,.0f} MB, "
             f"{rate:.1f} MB/s, ETA {eta:.0f} s")


def _write_manifests(out, mat_dir, record, jobs, layout, seq_len):
  """The documents manifest (unless there), then the material's; returns the corpus."""
  markers = {(j["split"], j["k"]): (
      prepared.committed(out / prepared.DOCUMENTS, prepared.shard_name(j["split"], j["k"], j["n"])),
      prepared.committed(mat_dir, prepared.shard_name(j["split"], j["k"], j["n"])))
      for j in jobs}
  per_split = lambda level, key: {split: [m[level][key] for (s, _), m in sorted(markers.items())
                                          if s == split] for split in SPLITS}
  docs_path = out / prepared.DOCUMENTS / prepared.MANIFEST
  if prepared.read_json(docs_path) is None:
    records, tokens = per_split(0, "records"), per_split(0, "tokens")
    if not sum(records["train"]):  # e.g. files of blank lines: no manifest, no corpus
      raise UserError("The training corpus is empty; point data.files or data.tfds_name at text "
                      "with at least one non-empty document.")
    prepared.write_json(docs_path, dict(
        format=prepared.FORMAT, words=record["words"], source=record["source"],
        input_sha=prepared.json_sha(record["slices"]), tokenizer_sha=record["tokenizer_sha"],
        splits={s: dict(records=records[s], tokens=tokens[s]) for s in SPLITS}))
  corpus = prepared.open(out)
  examples = per_split(1, "records")
  prepared.write_json(mat_dir / prepared.MANIFEST, dict(
      format=prepared.FORMAT, layout=layout, seq_len=seq_len, documents_sha=corpus.sha,
      tokenizer_sha=corpus.tokenizer_sha, splits={s: dict(records=examples[s]) for s in SPLITS}))
  return corpus


def _summary(corpus, layout, seq_len, totals, seconds, from_documents=False):
  """Counts of the prepared corpus, and one line saying them (from_documents: only the
  material was made, from the documents; no input was read, so no MB/s)."""
  m = corpus.material_manifest(layout, seq_len)
  docs = {s: corpus.manifest["splits"][s] for s in SPLITS}
  count = lambda d, key: sum(sum(d[s][key]) for s in SPLITS)
  summary = dict(path=corpus.path, documents=count(docs, "records"), tokens=count(docs, "tokens"),
                 examples=count(m["splits"], "records"),
                 shards={s: len(docs[s]["records"]) for s in SPLITS}, seconds=round(seconds, 2),
                 prepared_mb=round(totals.get("bytes", 0) / 2**20, 1))
  if not totals:
    speed = " (already prepared)"
  elif from_documents:
    speed = f" in {seconds:.0f} s (examples cut from the prepared documents; no input read)"
  else:
    speed = f" in {seconds:.0f} s ({summary['prepared_mb'] / max(seconds, 1e-9):.1f} MB/s)"
  summary["line"] = (f"Prepared {corpus.path}: {summary['documents']:,} documents, "
                     f"{summary['tokens']:,} tokens, {summary['examples']:,} {layout} examples "
                     f"of seq_len {seq_len}, in {summary['shards']['train']} train + "
                     f"{summary['shards']['eval']} eval shards{speed}.")
  return summary
