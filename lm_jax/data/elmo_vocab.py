"""ELMo's word vocabulary and character encoding (bilm-tf's UnicodeCharsVocabulary).

ELMo reads characters, not word ids: every token becomes `max_characters_per_token`
character ids, `[<bow>] + utf8 bytes + [<eow>] + [<pad>]*`, with two extra
"characters" spelling the sentence boundaries `<S>` and `</S>`. The word
vocabulary only names the softmax classes the language models predict. It
is `vocab.txt`, one word a line, `<S>`, `</S>`, `<UNK>` first (the LTG and
simple_elmo convention); built by frequency from a sample of the training
text when the corpus is prepared and `data.tokenizer` names none.
"""
import collections
import os
import re

import numpy as np

from lm_jax.data import packing
from lm_jax import paths
from lm_jax.errors import UserError

BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260
N_CHARACTERS = 261  # raw ids 0..260; simple_elmo's 262 adds id 0 for batch padding
BOS, EOS, UNK = "<S>", "</S>", "<UNK>"
SPECIALS = (BOS, EOS, UNK)
VOCAB_FILE = "vocab.txt"

_WORD_OR_PUNCT = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def split_tokens(sentence, pretokenized):
  """Tokens of one sentence: on whitespace when the text is already tokenised
  (LTG corpora), else words and punctuation marks."""
  return sentence.split() if pretokenized else _WORD_OR_PUNCT.findall(sentence)


def tokenized_sentences(documents, pretokenized):
  """Token lists of every sentence of every document, in order."""
  if pretokenized:
    return [split_tokens(line, True) for doc in documents
            for line in doc.splitlines() if line.strip()]
  return [t for doc in documents for t in
          (split_tokens(s, False) for s in packing.split_sentences(doc)) if t]


def token_chars(token, max_chars):
  """int32 [max_chars]: the character ids of one token (bilm-tf's encoding)."""
  ids = np.full(max_chars, PAD_CHAR, np.int32)
  if token == BOS:
    body = [BOS_CHAR]
  elif token == EOS:
    body = [EOS_CHAR]
  else:
    body = list(token.encode("utf-8", "ignore")[:max_chars - 2])
  ids[0] = BOW_CHAR
  ids[1:1 + len(body)] = body
  ids[1 + len(body)] = EOW_CHAR
  return ids


class Vocabulary:
  """Words <-> softmax ids, plus the character encoding of any token.

  Has the tokenizer interface train.py relies on (`vocab_size`, `files`).
  """

  def __init__(self, words, max_chars, path=None):
    words = list(words)
    if tuple(words[:3]) != SPECIALS:
      raise UserError(f"The ELMo vocabulary {path or ''} must start with {', '.join(SPECIALS)} "
                      f"(found {words[:3]}); put them on its first three lines.")
    if max_chars < 3:
      raise UserError(f"model.max_characters_per_token={max_chars} leaves no room for a "
                      "character; use at least 3 (bilm-tf uses 50).")
    self.words = words
    self.word_to_id = {w: i for i, w in enumerate(words)}
    self.max_chars = max_chars
    self.path = path
    self.bos_id, self.eos_id, self.unk_id = 0, 1, 2

  @property
  def vocab_size(self):
    return len(self.words)

  def ids(self, tokens):
    """int32 softmax ids of tokens; words outside the vocabulary are <UNK>."""
    return np.array([self.word_to_id.get(t, self.unk_id) for t in tokens], np.int32)

  def chars(self, tokens):
    """int32 [len(tokens), max_chars] character ids."""
    out = np.empty((len(tokens), self.max_chars), np.int32)
    for i, t in enumerate(tokens):
      out[i] = token_chars(t, self.max_chars)
    return out

  def save(self, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, VOCAB_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(w + "\n" for w in self.words)
    os.replace(tmp, path)  # never a half-written vocabulary
    self.path = path

  def files(self):
    return {VOCAB_FILE: self.path}


def count_words(token_lists):
  """Frequency-sorted words (ties in order of first appearance), without the specials."""
  counts = collections.Counter()
  for tokens in token_lists:
    counts.update(tokens)
  for special in SPECIALS:
    counts.pop(special, None)
  return [w for w, _ in counts.most_common()]


def build(token_lists, size, max_chars):
  """The `size` most frequent words of the corpus after `<S>`, `</S>`, `<UNK>`
  (fewer when the corpus has fewer distinct words)."""
  return Vocabulary(list(SPECIALS) + count_words(token_lists)[:size - len(SPECIALS)], max_chars)


def read(path, max_chars):
  """The vocabulary in `path` (a vocab.txt or a directory holding one; gs:// is read
  from a local copy)."""
  if paths.is_remote(path) and paths.isdir(path):
    path = paths.local_copy(path)
  if os.path.isdir(path):
    path = os.path.join(path, VOCAB_FILE)
  if not os.path.exists(path):
    raise UserError(f"No ELMo vocabulary at {path}; point data.tokenizer at a directory with "
                    f"{VOCAB_FILE} or leave it empty to build one from the corpus.")
  with open(path, encoding="utf-8") as f:
    words = [line.strip() for line in f if line.strip() and line.strip() != "!!!MAXTERMID"]
  return Vocabulary(words, max_chars, path)


# ---------------------------------------------------------------------------
# The family's vocabulary hook (its record in lm_jax/families/): workdir.py
# calls these instead of the sentencepiece tokenizer's. A new vocabulary is
# built when the corpus is prepared (data/prepare.py).
# ---------------------------------------------------------------------------

def exists(directory):
  return paths.exists(paths.join(directory, VOCAB_FILE))


def load(config, directory):
  return read(directory, config.model.max_characters_per_token)
