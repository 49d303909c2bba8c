"""Tokenizers in HuggingFace's file formats, and the writer of those files.

`HFTokenizer` reads a directory holding `tokenizer.json` (any `tokenizers`
model) or only a WordPiece `vocab.txt` (bert-base-uncased style) and offers
the interface of data/tokenizer.Tokenizer, so a run can continue
pre-training an HF checkpoint with its own vocabulary.

`save` writes what `AutoTokenizer.from_pretrained` needs. A sentencepiece
tokenizer is rebuilt as a `tokenizers` Unigram model that encodes every text
to the same ids: the proto's pieces and scores, its precompiled
normalisation map, and sentencepiece's whitespace rules.
"""
import json
import os

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors

from lm_jax.errors import UserError

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
FILES = (TOKENIZER_FILE, VOCAB_FILE, CONFIG_FILE, SPECIAL_TOKENS_FILE)

# The roles the training code needs, under HF's names, with BERT's tokens as
# the default for directories that do not name them.
ROLES = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
             mask_token="[MASK]")
BYTE_LEVEL_WORD_START = "\u0120"  # "Ġ": GPT-2 / RoBERTa's byte-level space


def has_files(path):
  return any(os.path.exists(os.path.join(path, f)) for f in (TOKENIZER_FILE, VOCAB_FILE))


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


def _backend(path):
  """(the `tokenizers` tokenizer of `path`, {role: special token})."""
  settings = {**_read_json(os.path.join(path, CONFIG_FILE)),
              **_read_json(os.path.join(path, SPECIAL_TOKENS_FILE))}
  tokens = {role: _token_content(settings.get(role) or default, path)
            for role, default in ROLES.items()}
  if os.path.exists(os.path.join(path, TOKENIZER_FILE)):
    return _read_tokenizer_json(os.path.join(path, TOKENIZER_FILE)), tokens
  return _wordpiece(os.path.join(path, VOCAB_FILE), tokens,
                    settings.get("do_lower_case", True) is not False), tokens


def vocab_size(path):
  """The embedding rows the tokenizer files in `path` need (its largest id + 1)."""
  return _size(_backend(path)[0])


class HFTokenizer:
  """A `tokenizers` tokenizer behind the data/tokenizer.Tokenizer interface."""

  def __init__(self, path):
    if not has_files(path):
      raise UserError(f"No {TOKENIZER_FILE} or {VOCAB_FILE} in {path}; give a directory "
                      "holding a HuggingFace tokenizer.")
    self.path = path
    self.backend, tokens = _backend(path)
    ids = {role: self.backend.token_to_id(token) for role, token in tokens.items()}
    absent = [tokens[role] for role, i in ids.items() if i is None]
    if absent:
      raise UserError(f"The tokenizer in {path} has no {absent[0]} token, which BERT-style "
                      f"pre-training needs; name it in {SPECIAL_TOKENS_FILE}.")
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
        ids[r] for r in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"))
    added = self.backend.get_added_tokens_decoder()
    self.special_ids = frozenset(ids.values()) | {i for i, t in added.items() if t.special}
    self._size = _size(self.backend)

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
    elif isinstance(pre, pre_tokenizers.ByteLevel):
      starts = [p.startswith(BYTE_LEVEL_WORD_START) for p in pieces]
    else:
      starts = [True] * len(pieces)
    starts = np.array(starts)
    starts[list(self.special_ids)] = True
    return starts

  def files(self):
    """{file name: path} of the files that make up this tokenizer."""
    return {name: os.path.join(self.path, name) for name in FILES
            if os.path.exists(os.path.join(self.path, name))}


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
  """Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json.

  `tokenizer` is either backend (data/tokenizer.Tokenizer or HFTokenizer).
  """
  backend = tokenizer.backend if isinstance(tokenizer, HFTokenizer) else from_sentencepiece(tokenizer)
  os.makedirs(out_dir, exist_ok=True)
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
