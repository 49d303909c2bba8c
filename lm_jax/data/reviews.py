"""Synthetic film reviews: a small sentiment task the repo can make offline.

Tests and the fine-tuning Colab need labelled data without a download. A
review is a few opinion sentences, all of one polarity, mixed with neutral
sentences about the outing. The opinion words come in two halves: labelled
training reviews use the first half ("seen"), test reviews the second
("unseen"), and unlabelled reviews use both, praise after "truly" and
criticism after "rather". A classifier trained from scratch on the labelled
reviews has never met the test's opinion words; one pre-trained on the
unlabelled reviews with MLM has learnt which words fill "truly ___" and which
"rather ___", and transfers — ULMFiT's point (Howard & Ruder, 2018) in
miniature. The cue words are there because a tiny BERT learns such a local
pattern in a minute on a CPU; polarity from co-occurrence across sentences
alone was not learnt in 5 000 steps (measured while building this). Long
reviews (many neutral sentences, opinions at the end) exercise
data.long_document.

    python -m lm_jax.data.reviews OUT_DIR   # writes the files `write` lists
"""
import json
import os
import sys

import numpy as np

# Opinion words that are single pieces in a tokenizer trained on the embedded Austen corpus.
POSITIVE = ("wonderful", "delightful", "brilliant", "charming", "excellent", "moving", "lovely",
            "splendid", "witty", "elegant", "clever", "tender", "graceful", "joyful", "fresh",
            "beautiful", "warm", "inspired", "agreeable", "pleasing", "handsome", "amiable",
            "noble", "perfect")
NEGATIVE = ("dreadful", "tedious", "awful", "dull", "tiresome", "silly", "painful", "weak", "flat",
            "cheap", "lazy", "wretched", "vulgar", "stupid", "foolish", "shocking", "odious",
            "horrid", "miserable", "disagreeable", "insipid", "coarse", "hateful", "gloomy")
LABELS = ("negative", "positive")
_ASPECTS = ("acting", "plot", "music", "dialogue", "ending", "cast", "story", "direction",
            "photography", "pacing", "script", "score", "humour", "lead", "villain", "editing",
            "costumes", "setting")
# Two opinion words of one polarity in most templates.
_OPINIONS = ("the {a} was {w} and {v}.", "i found the {a} {w}, even {v}.", "what a {w}, {v} {a}.",
             "the {a} felt {w} and the {b} was {v}.", "honestly, the {a} is {w} and {v}.",
             "{w} {a}, {v} {b}.", "everyone said the {a} was {w} and {v}, and it was.")
_NEUTRAL = ("we watched it on a {day} evening.", "the cinema was {size} and {temp}.",
            "my {who} chose the seats.", "it runs about {n} minutes.",
            "the film is set in {place}.", "we bought {snack} before it started.",
            "the trailer came out in {month}.", "i went with my {who} after work.",
            "the screening started at {n} past seven.")
_FILL = dict(day=("monday", "friday", "sunday", "rainy", "quiet"), size=("small", "large", "full"),
             temp=("cold", "warm", "noisy"), who=("sister", "friend", "father", "neighbour"),
             n=("ninety", "twenty", "forty", "fifty"), place=("paris", "a village", "the north",
             "a ship"), snack=("popcorn", "tea", "sweets"), month=("may", "june", "october"))


def _choice(rng, options):
  return options[rng.integers(len(options))]


def _words(polarity, which):
  lexicon = POSITIVE if polarity else NEGATIVE
  half = len(lexicon) // 2
  return {"seen": lexicon[:half], "unseen": lexicon[half:], "all": lexicon}[which]


def make(n, seed, words="all", neutral=(0, 3), opinions=(2, 4), opinions_last=False,
         cues=False):
  """`n` reviews [{"text", "label"}], half of each polarity in random order.

  words: which opinion words ("seen", "unseen" or "all"); neutral and
  opinions: the (min, max) numbers of neutral and opinion sentences;
  opinions_last: put the opinions after all neutral sentences (long documents
  whose verdict is at the end);
  cues: put "truly" before praise and "rather" before criticism.
  """
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    polarity = i % 2
    lexicon = _words(polarity, words)
    if cues:
      lexicon = tuple(("truly " if polarity else "rather ") + w for w in lexicon)
    said = [_choice(rng, _OPINIONS).format(
        a=_choice(rng, _ASPECTS), b=_choice(rng, _ASPECTS), w=_choice(rng, lexicon),
        v=_choice(rng, lexicon)) for _ in range(rng.integers(opinions[0], opinions[1] + 1))]
    fills = [_choice(rng, _NEUTRAL).format(**{k: _choice(rng, v) for k, v in _FILL.items()})
             for _ in range(rng.integers(neutral[0], neutral[1] + 1))]
    if opinions_last:
      sentences = fills + said
    else:
      sentences = [s for _, s in sorted(zip(rng.random(len(said) + len(fills)), said + fills))]
    out.append(dict(text=" ".join(sentences), label=LABELS[polarity]))
  return [out[j] for j in rng.permutation(n)]


def write(out_dir, seed=0):
  """Writes OUT_DIR/{unlabelled,train,test}.jsonl (20 000 / 200 / 400 reviews:
  all / seen / unseen opinion words) and long_{train,test}.jsonl (400 / 100
  ~250-word reviews, the verdict at the end). Returns {name: path}."""
  os.makedirs(out_dir, exist_ok=True)
  sets = dict(unlabelled=make(20_000, seed, "all", (0, 1), (3, 6), cues=True),
              train=make(200, seed + 1, "seen"), test=make(400, seed + 2, "unseen"),
              long_train=make(400, seed + 3, "all", (20, 30), opinions_last=True),
              long_test=make(100, seed + 4, "all", (20, 30), opinions_last=True))
  paths = {}
  for name, rows in sets.items():
    paths[name] = os.path.join(out_dir, f"{name}.jsonl")
    with open(paths[name], "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  return paths


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit("usage: python -m lm_jax.data.reviews OUT_DIR")
  print("\n".join(f"{k}: {v}" for k, v in write(sys.argv[1]).items()))
