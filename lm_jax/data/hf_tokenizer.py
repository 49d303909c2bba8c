"""Tokenizers in HuggingFace's file formats, and the writer of those files.

`HFTokenizer` reads a directory holding `tokenizer.json` (any `tokenizers`
model), a byte-level BPE `vocab.json` + `merges.txt` (GPT-2, RoBERTa) or
only a WordPiece `vocab.txt` (bert-base-uncased style) and offers the
interface of data/tokenizer.Tokenizer, so a run can continue pre-training
an HF checkpoint with its own vocabulary.

The special tokens are the directory's own. A role it does not name is
played as in GPT-2 and RoBERTa: [CLS] by the bos token, [SEP] by the eos
token (GPT-2's <|endoftext|> is bos, eos and unk at once: the document
separator). Without a pad token, padding takes the [SEP] id: padding is
always masked (attention masks, segment ids), so no token is ever added
to the vocabulary for it. A role the files lack altogether is an error
only where it is needed (a mask token: masked-LM training, fill_mask).

`save` writes what `AutoTokenizer.from_pretrained` needs: an HF
tokenizer's own files, as they are (the same ids, the same special
tokens); lm_jax's sentencepiece tokenizer rebuilt as a `tokenizers` Unigram
model that encodes every text to the same ids (the proto's pieces and
scores, its precompiled normalisation map, sentencepiece's whitespace
rules).
"""
import json
import os
import shutil

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors

from lm_jax import paths
from lm_jax.errors import UserError

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
BPE_VOCAB_FILE, BPE_MERGES_FILE = "vocab.json", "merges.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
FILES = (TOKENIZER_FILE, VOCAB_FILE, BPE_VOCAB_FILE, BPE_MERGES_FILE, CONFIG_FILE,
         SPECIAL_TOKENS_FILE)

# The roles the training and inference code use, under HF's names; a role a
# directory does not name is the token in FALLBACK's role, else BERT's token
# when the vocabulary has it (a bare vocab.txt names nothing).
ROLES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
FALLBACK = dict(cls_token="bos_token", sep_token="eos_token")
BERT_TOKENS = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                   mask_token="[MASK]")
# What needs a role, for the sentence of a tokenizer without it.
_NEEDED_BY = dict(unk_token="words it cannot split", cls_token="the start of an encoder's input",
                  sep_token="the end of a text and between documents",
                  mask_token="masked-LM training and fill_mask")
BYTE_LEVEL_WORD_START = "\u0120"  # "Ġ": GPT-2 / RoBERTa's byte-level space


def _exists(path, name):
  return paths.exists(paths.join(path, name))  # gs:// too: asked before any copy is made


def has_files(path):
  return (any(_exists(path, f) for f in (TOKENIZER_FILE, VOCAB_FILE))
          or all(_exists(path, f) for f in (BPE_VOCAB_FILE, BPE_MERGES_FILE)))


# The files may come from a downloaded checkpoint: each one lm_jax cannot
# read is one UserError sentence, and no file name inside them is followed.

def _read_json(path):
  if not os.path.exists(path):
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      settings = json.load(f)
  except ValueError as e:
    raise UserError(f"{path} is not valid JSON ({_first_line(e)}); get it again from its "
                    "source.") from None
  if not isinstance(settings, dict):
    raise UserError(f"{path} holds a JSON {type(settings).__name__}, not an object; get it "
                    "again from its source.")
  return settings


def _first_line(error):
  return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _token_content(value, path):
  """special_tokens_map values are strings or AddedToken dicts."""
  content = value.get("content") if isinstance(value, dict) else value
  if not isinstance(content, str):
    raise UserError(f"The tokenizer settings in {path} name a special token {str(value)[:40]!r} "
                    "that is not a string; get them again from their source.")
  return content


def _read_vocab(path):
  """vocab.txt: one piece per line, its id the line number."""
  try:
    with open(path, encoding="utf-8") as f:
      return {line.rstrip("\n"): i for i, line in enumerate(f)}
  except UnicodeDecodeError:
    raise UserError(f"{path} is not UTF-8 text; get it again from its source.") from None


def _read_tokenizer_json(path):
  try:
    return Tokenizer.from_file(path)
  except Exception as e:  # pylint: disable=broad-except (tokenizers raises plain Exceptions)
    raise UserError(f"{path} is not a tokenizer the tokenizers library reads "
                    f"({_first_line(e)}); get it again from its source.") from None


def _size(backend):
  """The ids a tokenizer uses: its largest + 1 (a vocabulary may have gaps)."""
  return max(backend.get_vocab(with_added_tokens=True).values(), default=-1) + 1


def _settings(path):
  """tokenizer_config.json and special_tokens_map.json, the latter winning."""
  return {**_read_json(os.path.join(path, CONFIG_FILE)),
          **_read_json(os.path.join(path, SPECIAL_TOKENS_FILE))}


def _named(settings, path):
  """{role: token} of the special tokens the settings name (null = not named)."""
  return {role: _token_content(value, path) for role, value in settings.items()
          if role.endswith("_token") and value is not None}


def _backend(path):
  """(the `tokenizers` tokenizer of `path`, {role: token its settings name})."""
  settings = _settings(path)
  named = _named(settings, path)
  if _exists(path, TOKENIZER_FILE):
    return _read_tokenizer_json(os.path.join(path, TOKENIZER_FILE)), named
  if _exists(path, BPE_VOCAB_FILE) and _exists(path, BPE_MERGES_FILE):
    return _byte_level_bpe(path, settings, named), named
  tokens = {role: named.get(role, BERT_TOKENS[role]) for role in ROLES}
  return _wordpiece(os.path.join(path, VOCAB_FILE), tokens,
                    settings.get("do_lower_case", True) is not False), tokens


def vocab_size(path):
  """The embedding rows the tokenizer files in `path` need (its largest id + 1)."""
  return _size(_backend(path)[0])


class HFTokenizer:
  """A `tokenizers` tokenizer behind the data/tokenizer.Tokenizer interface.

  `cls_id`, `sep_id`, `unk_id` and `mask_id` raise a UserError when the
  tokenizer has no such token; `has(role)` asks first (role: "mask_token").
  """

  def __init__(self, path):
    if not has_files(path):
      raise UserError(f"No {TOKENIZER_FILE}, {BPE_VOCAB_FILE} + {BPE_MERGES_FILE} or "
                      f"{VOCAB_FILE} in {path}; give a directory holding a HuggingFace tokenizer.")
    self.path = path
    self.backend, named = _backend(path)
    self._ids, self._lacking = {}, {}
    for role in ROLES:
      token = named.get(role) or named.get(FALLBACK.get(role)) or BERT_TOKENS[role]
      i = self.backend.token_to_id(token)
      if i is not None:
        self._ids[role] = i
      elif role in named or FALLBACK.get(role) in named:
        self._lacking[role] = token  # named, but not in the vocabulary
    # Padding is masked wherever it is used, so without a pad token any id will do.
    self.pad_id = self._ids.get("pad_token", self._ids.get("sep_token", 0))
    added = self.backend.get_added_tokens_decoder()
    self.special_ids = frozenset(self._ids.values()) | {i for i, t in added.items() if t.special}
    self._size = _size(self.backend)

  def has(self, role):
    return role in self._ids

  def _role(self, role):
    if role in self._ids:
      return self._ids[role]
    name = role.replace("_token", "")
    if role in self._lacking:
      raise UserError(f"The tokenizer in {self.path} names {self._lacking[role]!r} as its {name} "
                      "token, but its vocabulary has no such token; fix its "
                      f"{CONFIG_FILE}.")
    raise UserError(f"The tokenizer in {self.path} has no {name} token, which "
                    f"{_NEEDED_BY[role]} need; use a tokenizer with one, or name it as "
                    f"{role} in its {CONFIG_FILE}.")

  unk_id = property(lambda self: self._role("unk_token"))
  cls_id = property(lambda self: self._role("cls_token"))
  sep_id = property(lambda self: self._role("sep_token"))
  mask_id = property(lambda self: self._role("mask_token"))

  @property
  def vocab_size(self):
    """The largest id + 1: the embedding rows this tokenizer needs."""
    return self._size

  def encode(self, texts):
    """list of str -> list of lists of ids (no special tokens added)."""
    return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids):
    return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

  def id_to_token(self, i):
    return self.backend.id_to_token(int(i))

  def word_starts(self):
    """Boolean [vocab]: True where a piece begins a word (whole-word masking).

    WordPiece marks continuations ("##ing"); Metaspace and byte-level BPE
    mark beginnings ("▁the", "Ġthe"). Without either, every piece counts.
    """
    pieces = [self.backend.id_to_token(i) or "" for i in range(self.vocab_size)]
    prefix = getattr(self.backend.model, "continuing_subword_prefix", None)
    pre = self.backend.pre_tokenizer
    if prefix:
      starts = [not p.startswith(prefix) for p in pieces]
    elif isinstance(pre, pre_tokenizers.Metaspace):
      starts = [p.startswith(pre.replacement) for p in pieces]
    elif isinstance(pre, pre_tokenizers.ByteLevel) or isinstance(self.backend.decoder,
                                                                 decoders.ByteLevel):
      starts = [p.startswith(BYTE_LEVEL_WORD_START) for p in pieces]
    else:
      starts = [True] * len(pieces)
    starts = np.array(starts)
    starts[list(self.special_ids)] = True
    return starts

  def files(self):
    """{file name: path} of the files that make up this tokenizer."""
    return {name: os.path.join(self.path, name) for name in FILES if _exists(self.path, name)}


def _bert_template(cls, sep):
  """[CLS] A [SEP] (type 0) and [CLS] A [SEP] B [SEP] (B's part type 1)."""
  (cls_token, cls_id), (sep_token, sep_id) = cls, sep
  return processors.TemplateProcessing(
      single=f"{cls_token}:0 $A:0 {sep_token}:0",
      pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
      special_tokens=[(cls_token, cls_id), (sep_token, sep_id)])


def _wordpiece(vocab_path, tokens, lowercase):
  """BERT's WordPiece tokenizer from a bare vocab.txt (one piece per line)."""
  vocab = _read_vocab(vocab_path)
  tok = Tokenizer(models.WordPiece(vocab, unk_token=tokens["unk_token"]))
  tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece(prefix="##")
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens.values()])
  tok.post_processor = _bert_template(  # special tokens vocab.txt lacks were added after it
      *((tokens[r], tok.token_to_id(tokens[r])) for r in ("cls_token", "sep_token")))
  return tok


def _byte_level_bpe(path, settings, named):
  """GPT-2's / RoBERTa's tokenizer from vocab.json + merges.txt (no tokenizer.json).

  The special tokens the settings name become added tokens with the ids
  vocab.json gives them; one it lacks is not added (see HFTokenizer).
  RoBERTa's mask token takes the space before it, as transformers'.
  """
  try:
    bpe = models.BPE.from_file(os.path.join(path, BPE_VOCAB_FILE),
                               os.path.join(path, BPE_MERGES_FILE))
  except Exception as e:  # pylint: disable=broad-except (tokenizers raises plain Exceptions)
    raise UserError(f"{path}'s {BPE_VOCAB_FILE} and {BPE_MERGES_FILE} are not a BPE vocabulary "
                    f"the tokenizers library reads ({_first_line(e)}); get them again from "
                    "their source.") from None
  tok = Tokenizer(bpe)
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(
      add_prefix_space=settings.get("add_prefix_space") is True)
  tok.decoder = decoders.ByteLevel()
  vocab = tok.get_vocab()
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False,
                                     lstrip=role == "mask_token")
                          for role, t in sorted(named.items()) if t in vocab])
  return tok


def from_sentencepiece(sp_tokenizer):
  """A `tokenizers` Unigram tokenizer equal to lm_jax's sentencepiece one.

  The mask token takes the whitespace before it (lstrip), as
  data/tokenizer.Tokenizer.encode drops the lone "▁" piece before [MASK].
  """
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(sp_tokenizer.sp.serialized_model_proto())
  spec = proto.normalizer_spec
  tok = Tokenizer(models.Unigram([(p.piece, p.score) for p in proto.pieces],
                                 unk_id=sp_tokenizer.unk_id, byte_fallback=False))
  steps = [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
  if spec.remove_extra_whitespaces:
    # Runs of spaces become one and trailing ones go. Leading ones need no
    # rule: Metaspace does not add a second "▁" before one that is there.
    steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip(left=False, right=True)]
  tok.normalizer = normalizers.Sequence(steps)
  scheme = "first" if spec.add_dummy_prefix else "never"
  tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme, split=False)
  tok.decoder = decoders.Metaspace(prepend_scheme=scheme, split=False)
  t = sp_tokenizer
  tok.add_special_tokens([
      AddedToken(t.id_to_token(i), special=True, normalized=False, lstrip=i == t.mask_id)
      for i in sorted(t.special_ids)])
  tok.post_processor = _bert_template((t.id_to_token(t.cls_id), t.cls_id),
                                      (t.id_to_token(t.sep_id), t.sep_id))
  return tok


def save(tokenizer, out_dir, model_max_length):
  """Writes the tokenizer files `AutoTokenizer.from_pretrained(out_dir)` reads.

  An HFTokenizer's own files are copied as they are; a bare vocab.txt gets
  its tokenizer.json and settings too. lm_jax's sentencepiece tokenizer
  (data/tokenizer.Tokenizer) is written as tokenizer.json,
  tokenizer_config.json and special_tokens_map.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  if isinstance(tokenizer, HFTokenizer):
    files = tokenizer.files()
    for name, path in files.items():
      shutil.copyfile(path, os.path.join(out_dir, name))
    if TOKENIZER_FILE not in files and BPE_VOCAB_FILE not in files:  # WordPiece from vocab.txt
      tokenizer.backend.save(os.path.join(out_dir, TOKENIZER_FILE))
    if CONFIG_FILE in files or SPECIAL_TOKENS_FILE in files:
      return
    backend = tokenizer.backend
  else:
    backend = from_sentencepiece(tokenizer)
    backend.save(os.path.join(out_dir, TOKENIZER_FILE))
  added = backend.get_added_tokens_decoder()
  role_ids = dict(pad_token=tokenizer.pad_id, unk_token=tokenizer.unk_id, cls_token=tokenizer.cls_id,
                  sep_token=tokenizer.sep_id, mask_token=tokenizer.mask_id)
  specials = {}
  for role, i in role_ids.items():
    t = added.get(i)
    specials[role] = (dict(content=t.content, lstrip=t.lstrip, rstrip=t.rstrip,
                           normalized=t.normalized, single_word=t.single_word)
                      if t is not None else tokenizer.id_to_token(i))
  config = dict(tokenizer_class="PreTrainedTokenizerFast", model_max_length=model_max_length,
                model_input_names=["input_ids", "token_type_ids", "attention_mask"],
                clean_up_tokenization_spaces=False, **specials)
  for name, content in ((CONFIG_FILE, config), (SPECIAL_TOKENS_FILE, specials)):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
      json.dump(content, f, indent=2, ensure_ascii=False)
