"""Tokenizers: a sentencepiece model with BERT's special tokens.

A run without `data.tokenizer` trains one into `WORKDIR/tokenizer/spm.model`.
`load` also opens HuggingFace tokenizer files (data/hf_tokenizer.py), the
second backend, with the same interface.
The special tokens are ordinary pieces with fixed ids ([PAD]=0, [UNK]=1,
[CLS]=2, [SEP]=3, [MASK]=4), and "[MASK]" typed in a text becomes the mask
token, so fill-in-the-blank prompts need no special API.
"""
import glob
import os
import shutil
import tempfile

import numpy as np
import sentencepiece as spm

from lm_jax.data import hf_tokenizer
from lm_jax import paths
from lm_jax.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_FILE = "spm.model"
TMP_PREFIX = ".tmp-"  # train()'s temporary folder in the output directory
WORD_START = "\u2581"  # sentencepiece's word-boundary marker


class Tokenizer:
  """Text <-> token ids. The interface every tokenizer backend provides."""

  def __init__(self, path):
    if os.path.isdir(path):
      path = os.path.join(path, MODEL_FILE)
    if not os.path.exists(path):
      raise UserError(f"No tokenizer model at {path}; point data.tokenizer at a "
                      f"directory holding {MODEL_FILE} or leave it empty to train one.")
    self.path = path
    self.sp = spm.SentencePieceProcessor(model_file=path)
    pieces = [self.sp.id_to_piece(i) for i in range(len(SPECIAL_TOKENS))]
    if tuple(pieces) != SPECIAL_TOKENS:
      raise UserError(f"Tokenizer {path} does not start with BERT's special tokens "
                      f"{SPECIAL_TOKENS} (found {pieces}); train one with lm_jax.")
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(5)
    self.special_ids = frozenset(range(5))
    self._space_id = self.sp.piece_to_id(WORD_START)

  @property
  def vocab_size(self):
    return self.sp.get_piece_size()

  def encode(self, texts):
    """list of str -> list of lists of ids (no special tokens added).

    The space before a typed "[MASK]" belongs to the masked word, as in
    training, where a whole piece such as "▁word" is replaced by [MASK].
    """
    texts = list(texts)
    # Only a text that spells "[MASK]" holds the mask piece: the others need no scan
    # (preparing a corpus encodes millions of sentences through here).
    return [[t for t, nxt in zip(ids, ids[1:] + [None])
             if not (t == self._space_id and nxt == self.mask_id)] if "[MASK]" in text else ids
            for text, ids in zip(texts, self.sp.encode(texts, out_type=int))]

  def decode(self, ids):
    return self.sp.decode([int(i) for i in ids])

  def id_to_token(self, i):
    return self.sp.id_to_piece(int(i))

  def word_starts(self):
    """Boolean [vocab]: True where a piece begins a word (whole-word masking)."""
    return np.array([self.sp.id_to_piece(i).startswith(WORD_START) or i in self.special_ids
                     for i in range(self.vocab_size)])

  def files(self):
    """{file name: path} of the files that make up this tokenizer."""
    return {MODEL_FILE: self.path}


def exists(path):
  """Whether directory `path` holds a tokenizer of either backend."""
  return paths.exists(paths.join(path, MODEL_FILE)) or hf_tokenizer.has_files(path)


def load(path):
  """The tokenizer at `path`: a sentencepiece model (spm.model, or the file
  itself), else HF files (tokenizer.json, a byte-level BPE vocab.json +
  merges.txt, or a WordPiece vocab.txt). A gs:// directory is read from a local copy."""
  path = paths.local_copy(path)
  if os.path.isdir(path) and not os.path.exists(os.path.join(path, MODEL_FILE)):
    if hf_tokenizer.has_files(path):
      return hf_tokenizer.HFTokenizer(path)
    raise UserError(f"No tokenizer in {path} ({MODEL_FILE}, {hf_tokenizer.TOKENIZER_FILE}, "
                    f"{hf_tokenizer.BPE_VOCAB_FILE} + {hf_tokenizer.BPE_MERGES_FILE} or "
                    f"{hf_tokenizer.VOCAB_FILE}); point data.tokenizer at one or leave it empty "
                    "to train one.")
  return Tokenizer(path)


def copy(source, out_dir):
  """Copies the tokenizer at `source` (checked by loading it) into `out_dir`."""
  files = load(source).files()
  paths.makedirs(out_dir)
  for name, path in files.items():
    paths.copy_file(path, paths.join(out_dir, name))


def train(texts, out_dir, vocab_size, *, max_sentences=2_000_000):
  """Trains a unigram sentencepiece model on `texts` into `out_dir`/spm.model.

  Written into a temporary folder and renamed, so an interrupted run never
  leaves a half-written tokenizer behind; a killed run's folder is removed
  by the next start.
  """
  os.makedirs(out_dir, exist_ok=True)
  for stale in glob.glob(os.path.join(out_dir, TMP_PREFIX + "*")):
    shutil.rmtree(stale, ignore_errors=True)
  tmp = tempfile.mkdtemp(dir=out_dir, prefix=TMP_PREFIX)
  prefix = os.path.join(tmp, "spm")
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=prefix, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="[PAD]", unk_piece="[UNK]",
        user_defined_symbols=list(SPECIAL_TOKENS[2:]),
        minloglevel=2, num_threads=os.cpu_count() or 1)
    for ext in (".vocab", ".model"):  # spm.model last: its presence means a complete tokenizer
      os.replace(prefix + ext, os.path.join(out_dir, "spm" + ext))
  except RuntimeError as e:
    raise UserError(f"Could not train a {vocab_size}-piece tokenizer on this corpus ({e}); "
                    "use a larger corpus or a smaller model.vocab_size.") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return Tokenizer(out_dir)
