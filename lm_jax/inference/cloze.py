"""Fill-in-the-blank on held-out text: what a masked LM has learnt, shown.

    print(cloze.report(lm_jax.load("runs/demo"), count=4))
    # Fill-mask on 4 held-out sentences (top 3 answers, probabilities):
    #   ... and she [MASK] nothing.  ->  said 0.21 | knew 0.08 | was 0.05  (true: said)

`train.show_fill_mask=N` (configs/bert_base.py:demo) prints these lines at the
end of a run. The sentences come from the run's evaluation split (the
embedded corpus: *Persuasion*), spread evenly through it; in each, the word
nearest the middle that the tokenizer keeps whole is masked, so one [MASK]
stands for one word and the true word is one of the answers the model can give.
"""
import re

from lm_jax import config as config_lib, families
from lm_jax.data import packing, sources
from lm_jax.errors import UserError
from lm_jax.inference.encoder import TYPED_MASK

_WORD = re.compile(r"[A-Za-z]+")
WORDS = (6, 20)  # a sentence's length in words: enough context, and one line to read


def check(config):
  """One UserError when train.show_fill_mask asks for what the run cannot show."""
  count = config.train.get("show_fill_mask", 0)
  config_lib.check(count >= 0, f"train.show_fill_mask={count} must be 0 (off) or more "
                   "(held-out sentences to fill in at the end).")
  if count and families.get(config.model).inference != "masked_lm":
    raise UserError(f"train.show_fill_mask={count} needs a masked LM; model.family="
                    f"{config.model.family} is not one: set it to 0.")


def examples(documents, tokenizer, count, max_length):
  """[(text with one [MASK], the masked word)] from `count` sentences of
  `documents` spread evenly through them, each at most `max_length` tokens
  with [CLS] and [SEP]."""
  found = []
  for doc in documents:
    for sentence in packing.split_sentences(doc):
      words = sentence.split()
      if (WORDS[0] <= len(words) <= WORDS[1]
          and len(tokenizer.encode([sentence])[0]) + 2 <= max_length):
        found.append(words)
  picked = [found[(2 * k + 1) * len(found) // (2 * count)] for k in range(count)] if found else []
  out = []
  for words in picked:
    whole = [i for i, w in enumerate(words) if _WORD.fullmatch(w) and _one_piece(tokenizer, w)]
    if whole:
      i = min(whole, key=lambda j: abs(j - len(words) / 2))
      out.append((" ".join(words[:i] + [TYPED_MASK] + words[i + 1:]), words[i]))
  return out


def _one_piece(tokenizer, word):
  return len(tokenizer.encode([word])[0]) == 1


def lines(model, count=4, top_k=3):
  """One line per held-out sentence: the masked text, the model's `top_k` answers
  with their probabilities, and the true word."""
  documents = sources.documents(model.config.data, "eval")
  if not documents:
    raise UserError("train.show_fill_mask needs held-out text: set data.eval_files (or "
                    "data.tfds_eval_split), or set train.show_fill_mask=0.")
  length = min(model.max_length, model.config.data.seq_len)  # the length it was trained at
  pairs = examples(documents, model.tokenizer, count, length)
  answers = model.fill_mask([text for text, _ in pairs], top_k=top_k) if pairs else []
  return [f"  {text}  ->  " + " | ".join(f"{a['token_str']} {a['score']:.2f}" for a in top)
          + f"  (true: {word})" for (text, word), top in zip(pairs, answers)]


def report(model, count=4, top_k=3):
  """`lines` under a heading, as the end of a run prints them."""
  return "\n".join([f"Fill-mask on {count} held-out sentences (top {top_k} answers, "
                    "probabilities):", *lines(model, count, top_k)])
