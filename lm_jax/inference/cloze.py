"""Fill-in-the-blank on held-out text: what a masked LM has learnt, shown.

    print(cloze.report(lm_jax.load("runs/demo"), "runs/demo/data", count=4))
    # Fill-mask on 4 held-out sentences (top 3 answers, probabilities):
    #   ... and she [MASK] nothing.  ->  said 0.21 | knew 0.08 | was 0.05  (true: said)

`train.show_fill_mask=N` (configs/bert_base.py:demo) prints these lines at the
end of a run. The sentences come from the held-out documents of the run's
prepared corpus (the embedded corpus: *Persuasion*), N documents spread evenly
through them, one sentence each (so a big eval split costs N reads, not a
pass); in each sentence the word nearest the middle that the tokenizer keeps
whole is masked, so one [MASK] stands for one word and the true word is one of
the answers the model can give.
"""
import itertools
import re

from lm_jax import config as config_lib, families, paths
from lm_jax.data import prepared
from lm_jax.errors import UserError
from lm_jax.inference.encoder import TYPED_MASK

_WORD = re.compile(r"[A-Za-z]+")
WORDS = (6, 20)  # a sentence's length in words: enough context, and one line to read
_LOOK_AHEAD = 64  # documents read past one without such a sentence, at most


def check(config):
  """One UserError when train.show_fill_mask asks for what the run cannot show."""
  count = config.train.get("show_fill_mask", 0)
  config_lib.check(count >= 0, f"train.show_fill_mask={count} must be 0 (off) or more "
                   "(held-out sentences to fill in at the end).")
  if count and families.get(config.model).inference != "masked_lm":
    raise UserError(f"train.show_fill_mask={count} needs a masked LM; model.family="
                    f"{config.model.family} is not one: set it to 0.")


def examples(documents, tokenizer, max_length):
  """[(text with one [MASK], the masked word)]: one per document (a list of sentences)
  that has a sentence of WORDS words within `max_length` tokens with [CLS] and [SEP],
  the one nearest the document's middle."""
  out = []
  for sentences in documents:
    fit = [i for i, s in enumerate(sentences) if _fits(s, tokenizer, max_length)]
    if fit:
      words = sentences[min(fit, key=lambda i: abs(i - len(sentences) / 2))].split()
      i = min(_whole_words(words, tokenizer), key=lambda j: abs(j - len(words) / 2))
      out.append((" ".join(words[:i] + [TYPED_MASK] + words[i + 1:]), words[i]))
  return out


def _fits(sentence, tokenizer, max_length):
  words = sentence.split()
  return (WORDS[0] <= len(words) <= WORDS[1] and any(True for _ in _whole_words(words, tokenizer))
          and len(tokenizer.encode([sentence])[0]) + 2 <= max_length)


def _whole_words(words, tokenizer):
  return (i for i, w in enumerate(words) if _WORD.fullmatch(w) and _one_piece(tokenizer, w))


def _one_piece(tokenizer, word):
  return len(tokenizer.encode([word])[0]) == 1


def held_out_documents(corpus_dir, tokenizer, count, max_length):
  """The sentences of `count` held-out documents of the prepared corpus spread evenly
  through them; a document with no sentence for `examples` gives way to the next."""
  corpus = prepared.open(corpus_dir)
  if "eval" not in corpus.splits():
    raise UserError(f"train.show_fill_mask needs held-out text, and {corpus_dir} has none: set "
                    "data.eval_files (or data.tfds_eval_split), or set train.show_fill_mask=0.")
  counts = corpus.manifest["splits"]["eval"]["records"]
  records = prepared.Records(paths.join(corpus_dir, prepared.DOCUMENTS), "eval", counts)
  n, found, i = len(records), [], 0
  for k in range(count):
    i = max(i, (2 * k + 1) * n // (2 * count))
    for i in range(i, min(n, i + _LOOK_AHEAD)):
      lengths, ids = prepared.decode_ints(records.read([i])[0])
      bounds = [0, *itertools.accumulate(int(x) for x in lengths)]
      sentences = [tokenizer.decode(ids[a:b]) for a, b in zip(bounds, bounds[1:])]
      if any(_fits(s, tokenizer, max_length) for s in sentences):
        found.append(sentences)
        break
    i += 1
  return found


def lines(model, corpus_dir, count=4, top_k=3):
  """One line per held-out sentence of the run's prepared corpus: the masked text, the
  model's `top_k` answers with their probabilities, and the true word."""
  length = min(model.max_length, model.config.data.seq_len)  # the length it was trained at
  pairs = examples(held_out_documents(corpus_dir, model.tokenizer, count, length),
                   model.tokenizer, length)
  answers = model.fill_mask([text for text, _ in pairs], top_k=top_k) if pairs else []
  return [f"  {text}  ->  " + " | ".join(f"{a['token_str']} {a['score']:.2f}" for a in top)
          + f"  (true: {word})" for (text, word), top in zip(pairs, answers)]


def report(model, corpus_dir, count=4, top_k=3):
  """`lines` under a heading, as the end of a run prints them."""
  return "\n".join([f"Fill-mask on {count} held-out sentences (top {top_k} answers, "
                    "probabilities):", *lines(model, corpus_dir, count, top_k)])
