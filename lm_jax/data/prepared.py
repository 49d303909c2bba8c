"""A prepared corpus on disk (local or gs://): shards of records, markers, manifests.

    CORPUS/
      tokenizer/                       the tokenizer the documents were cut with (or ELMo's vocab.txt)
      documents/                       level 1: one record per document, any family
        plan.json                      written first: the input, its slices, the tokenizer's hash
        train-00003-of-00012.array_record   the documents of input slice 3
        train-00003-of-00012.done      written after its shard: the shard is complete
        manifest.json                  written last: per-shard counts, hashes
      <layout>-<seq_len>/              level 2: one record per example block, e.g. sentence_blocks-128/
        train-00003-of-00012.array_record   made from documents shard 3 alone
        train-00003-of-00012.done
        manifest.json                  written last

A shard's file is written under its final name and counts only once its
`.done` marker exists, so a killed writer never leaves a shard that is taken
for complete; a level counts only once its manifest exists. Nothing is
renamed (gs:// has no rename). Levels are never rewritten: a new seq_len or
layout adds a directory beside the others.

`open(path)` reads the documents manifest, and `Corpus.material` one level-2
manifest: start-up reads no data. `Records` reads records by global index,
in batches, through ArrayRecord (which reads gs:// itself).
"""
import hashlib
import json
import os
import struct
import tempfile

import numpy as np
from array_record.python import array_record_data_source, array_record_module
from etils import epath

from lm_jax import paths
from lm_jax.errors import UserError

FORMAT = 1  # bump when records or manifests change meaning; older corpora are refused
DOCUMENTS = "documents"
PLAN, MANIFEST, TOKENIZER = "plan.json", "manifest.json", "tokenizer"
SHARD_SUFFIX, DONE_SUFFIX = ".array_record", ".done"
# group_size:1 = one record per chunk: what random access (Grain) needs. Token ids
# compress poorly and slowly for their bytes, so the chunks are stored as they are.
WRITER_OPTIONS = "group_size:1,uncompressed"
PIN_FILE = "corpus.json"  # in a training WORKDIR: the manifests the run started on


def material_dir(layout, seq_len):
  return f"{layout}-{seq_len}"


def shard_name(split, k, n):
  return f"{split}-{k:05d}-of-{n:05d}"


# ---------------------------------------------------------------------------
# Records: a few int32 arrays, or text
# ---------------------------------------------------------------------------

def encode_ints(*arrays):
  """One record: the number of arrays, their lengths (uint32), then their int32 values."""
  arrays = [np.asarray(a, np.int32) for a in arrays]
  head = struct.pack(f"<{1 + len(arrays)}I", len(arrays), *(a.size for a in arrays))
  return head + b"".join(a.tobytes() for a in arrays)


def decode_ints(record):
  """The int32 arrays of an `encode_ints` record (read-only views)."""
  (count,) = struct.unpack_from("<I", record)
  offset, arrays = 4 * (1 + count), []
  for n in struct.unpack_from(f"<{count}I", record, 4):
    arrays.append(np.frombuffer(record, np.int32, n, offset))
    offset += 4 * n
  return tuple(arrays)


# ---------------------------------------------------------------------------
# Files through etils.epath (local or gs://)
# ---------------------------------------------------------------------------

def read_json(path):
  """The JSON object at `path`, or None when there is no file."""
  path = epath.Path(path)
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError:
    raise UserError(f"{path} is damaged (not JSON); delete it and prepare the corpus "
                    "again.") from None


def write_json(path, value):
  epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
  epath.Path(path).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def json_sha(value):
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def files_sha(files):
  """One hash of a {name: path} set of files (a tokenizer's)."""
  h = hashlib.sha256()
  for name in sorted(files):
    h.update(name.encode() + b"\0" + hashlib.sha256(epath.Path(files[name]).read_bytes()).digest())
  return h.hexdigest()


def copy_files(files, out_dir):
  """Copies a {name: path} set of files into `out_dir` (either may be gs://)."""
  paths.makedirs(out_dir)
  for name, path in files.items():
    paths.copy_file(os.fspath(path), paths.join(os.fspath(out_dir), name))


# ---------------------------------------------------------------------------
# Shards
# ---------------------------------------------------------------------------

def committed(directory, name):
  """The marker of a complete shard (its counts), or None."""
  return read_json(epath.Path(directory) / (name + DONE_SUFFIX))


def write_records(directory, name, records):
  """Writes the records (an iterable of bytes) as shard file `name`; returns their count.
  The shard counts only once `commit` has written its marker."""
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  final = directory / (name + SHARD_SUFFIX)
  local = tempfile.mktemp(suffix=SHARD_SUFFIX) if paths.is_remote(final) else os.fspath(final)
  writer = array_record_module.ArrayRecordWriter(local, WRITER_OPTIONS)
  count = 0
  try:
    for record in records:
      writer.write(record)
      count += 1
  finally:
    writer.close()
  if paths.is_remote(final):  # written locally, then copied under its final name
    epath.Path(local).copy(final, overwrite=True)
    os.remove(local)
  return count


def commit(directory, name, marker):
  """Marks shard `name` complete; `marker` (its counts) is what `committed` returns."""
  write_json(epath.Path(directory) / (name + DONE_SUFFIX), marker)


def shard_records(directory, name, chunk=512):
  """The records of one shard, in order (sequential reads)."""
  path = os.fspath(epath.Path(directory) / (name + SHARD_SUFFIX))
  reader = array_record_module.ArrayRecordReader(path)
  try:
    n = reader.num_records()
    for start in range(0, n, chunk):
      yield from reader.read(start, min(start + chunk, n))
  finally:
    reader.close()


class Records:
  """The records of one split of one level, by global index: shard 0's, then shard 1's, ...

  Opens a shard's file when a record of it is first read; the counts come from the
  manifest, so building one reads nothing.
  """

  def __init__(self, directory, split, counts):
    self.counts = list(counts)
    n = len(self.counts)
    paths = [f"{epath.Path(directory) / (shard_name(split, k, n) + SHARD_SUFFIX)}[0:{c}]"
             for k, c in enumerate(self.counts) if c]
    self._source = array_record_data_source.ArrayRecordDataSource(paths) if paths else None

  def __len__(self):
    return sum(self.counts)

  def read(self, indices):
    """The records at `indices` (a list of ints), read together."""
    return self._source.__getitems__([int(i) for i in indices])


# ---------------------------------------------------------------------------
# Opening a prepared corpus
# ---------------------------------------------------------------------------

class Material:
  """One split of one level-2 directory: what a family's Examples read."""

  def __init__(self, corpus, layout, seq_len, split, manifest):
    self.corpus, self.layout, self.seq_len, self.split = corpus, layout, seq_len, split
    self.name = material_dir(layout, seq_len)
    self.sha = json_sha(manifest)
    shards = manifest["splits"][split]
    self.records = Records(epath.Path(corpus.path) / self.name, split, shards["records"])
    self.num_tokens = sum(corpus.manifest["splits"][split]["tokens"])  # of the documents
    self.num_documents = sum(corpus.manifest["splits"][split]["records"])

  def __len__(self):
    return len(self.records)


class Corpus:
  """A prepared corpus, opened from its documents manifest."""

  def __init__(self, path):
    self.path = os.fspath(path)
    documents = epath.Path(path) / DOCUMENTS
    self.manifest = read_json(documents / MANIFEST)
    if self.manifest is None:
      what = ("is being prepared or its preparation stopped" if (documents / PLAN).exists()
              else "is not a prepared corpus")
      raise UserError(f"{path} {what} (no {DOCUMENTS}/{MANIFEST}); run python -m lm_jax.prepare "
                      f"--out={path} with its config to finish it.")
    if self.manifest.get("format") != FORMAT:
      raise UserError(f"{path} was prepared by another lm_jax version (format "
                      f"{self.manifest.get('format')}, this one reads {FORMAT}); prepare it again.")
    self.sha = json_sha(self.manifest)
    self.tokenizer_sha = self.manifest["tokenizer_sha"]
    self.words = self.manifest["words"]
    self.tokenizer_dir = os.fspath(epath.Path(path) / TOKENIZER)

  def splits(self):
    return [s for s, v in self.manifest["splits"].items() if v["records"]]

  def material_manifest(self, layout, seq_len):
    """The level-2 manifest for (layout, seq_len), or None when not prepared."""
    manifest = read_json(epath.Path(self.path) / material_dir(layout, seq_len) / MANIFEST)
    if manifest is not None and manifest.get("documents_sha") != self.sha:
      raise UserError(f"{self.path}/{material_dir(layout, seq_len)} was made from other "
                      f"documents than {self.path}/{DOCUMENTS}; delete it and prepare again.")
    return manifest

  def material(self, layout, seq_len, split):
    """Split `split` of the (layout, seq_len) examples; one UserError when not prepared."""
    manifest = self.material_manifest(layout, seq_len)
    if manifest is None:
      there = sorted(p.name for p in epath.Path(self.path).iterdir()
                     if (p / MANIFEST).exists() and p.name != DOCUMENTS)
      raise UserError(f"{self.path} holds no {layout} examples for data.seq_len={seq_len} (it has "
                      f"{', '.join(there) or 'none'}); run python -m lm_jax.prepare with this "
                      f"config and --out={self.path} (the documents are reused).")
    return Material(self, layout, seq_len, split, manifest)


def open(path):  # pylint: disable=redefined-builtin
  """The prepared corpus at `path` (local or gs://); reads its documents manifest only."""
  return Corpus(path)


# ---------------------------------------------------------------------------
# A training run's view of its corpus
# ---------------------------------------------------------------------------

def check_fits(corpus, tokenizer_sha, words, where):
  """Refuses a corpus cut with another tokenizer, or with words for pieces (or back)."""
  if corpus.words != words:
    kinds = ("words (ELMo)", "token ids of a tokenizer")
    raise UserError(f"{corpus.path} holds {kinds[not corpus.words]} but this model reads "
                    f"{kinds[not words]}; prepare a corpus for this family with its config.")
  if tokenizer_sha != corpus.tokenizer_sha:
    raise UserError(f"{corpus.path} was tokenized with another tokenizer than {where}; use the "
                    f"corpus's ({corpus.tokenizer_dir}) or prepare the corpus with this one.")


def pin(corpus, materials, workdir, started, is_writer=True):
  """Records in WORKDIR/corpus.json the manifests a run reads. Once the run has
  `started` (it has checkpoints), a start whose manifests differ from the recorded
  ones is refused: the resumed run would not be the same run."""
  path = epath.Path(workdir) / PIN_FILE
  pinned = (read_json(path) or {}) if started else {}
  now = {DOCUMENTS: corpus.sha, **{m.name: m.sha for m in materials}}
  for name, sha in now.items():
    if name in pinned and pinned[name] != sha:
      raise UserError(f"The prepared corpus {corpus.path} ({name}) is not the one this run started "
                      f"on in {workdir}; point data.prepared at that corpus, or use a new --workdir.")
  if is_writer and any(pinned.get(name) != sha for name, sha in now.items()):
    write_json(path, dict(pinned, **now))
