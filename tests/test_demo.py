"""The README's first command, configs/bert_base.py:demo: its run ends by filling in
a masked word of held-out sentences (train.show_fill_mask, inference/cloze.py).

The demo's measured accuracy (a 3-minute run) is in configs/bert_base.py's
docstring, not asserted here: these runs are tiny."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, TINY_FLAGS, cli_args, tiny_config
from lm_jax import config as config_lib, families
from lm_jax.data import packing, prepare, sources, tokenizer as tokenizer_lib
from lm_jax.errors import UserError
from lm_jax.inference import cloze

# "  <text with [MASK]>  ->  w 0.12 | w 0.05 | w 0.01  (true: word)"
LINE = re.compile(r"^  (?P<text>.*\[MASK\].*)  ->  (?P<answers>.+)  \(true: (?P<word>[A-Za-z]+)\)$")


def held_out_sentences():
  return {s for d in sources.embedded_documents("eval") for s in packing.split_sentences(d)}


def test_demo_run_ends_with_fill_mask_lines(tmp_path, tokenizer_dir):
  flags = dict(TINY_FLAGS, **{"model.vocab_size": 8000, "data.tokenizer": tokenizer_dir,
                              "train.show_fill_mask": 3, "train.eval_every": 20})
  out = subprocess.run(
      [sys.executable, "-m", "lm_jax.main", "--config=" + os.path.join(REPO, "configs/bert_base.py:demo"),
       f"--workdir={tmp_path / 'demo'}", *cli_args(flags)],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  printed = out.stdout.splitlines()
  progress = [line for line in printed if line.startswith(("step ", "eval at step "))]
  assert len(progress) > 20 and not any("nsp_" in line for line in progress)  # NSP off: trivial
  start = printed.index("Fill-mask on 3 held-out sentences (top 3 answers, probabilities):")
  lines = [LINE.match(line) for line in printed[start + 1:start + 4]]
  assert all(lines), printed[start:]
  sentences = held_out_sentences()
  for m in lines:
    assert " ".join(m["text"].replace("[MASK]", m["word"]).split()) in sentences, m["text"]
    answers = m["answers"].split(" | ")
    assert len(answers) == 3 and all(re.fullmatch(r".+ [01]\.\d\d", a) for a in answers), answers


def test_examples_mask_one_whole_word_of_held_out_sentences(tmp_path, tokenizer_dir):
  tok = tokenizer_lib.load(tokenizer_dir)
  corpus = str(tmp_path / "corpus")
  prepare.prepare(tiny_config(tokenizer_dir), corpus, families.FAMILIES["bert"].examples,
                  tokenizer=tokenizer_dir, log=lambda _: None)
  documents = cloze.held_out_documents(corpus, tok, 5, 32)
  pairs = cloze.examples(documents, tok, 32)
  assert len(pairs) == 5 and len({text for text, _ in pairs}) == 5
  sentences = held_out_sentences()
  for text, word in pairs:
    assert text.count("[MASK]") == 1 and text.replace("[MASK]", word) in sentences
    assert len(tok.encode([word])[0]) == 1  # one [MASK] stands for the whole word
    assert len(tok.encode([text])[0]) + 2 <= 32
  assert pairs == cloze.examples(cloze.held_out_documents(corpus, tok, 5, 32), tok, 32)
  # the documents are spread through the split: the first and the last fifth are read
  held_out = sources.embedded_documents("eval")
  first = next(i for i, d in enumerate(held_out) if pairs[0][0].split("[MASK]")[0] in d)
  last = next(i for i, d in enumerate(held_out) if pairs[-1][0].split("[MASK]")[-1] in d)
  assert first < len(held_out) / 5 and last >= 4 * len(held_out) / 5
  (tmp_path / "a.txt").write_text("\n\n".join(sources.embedded_documents("train")[:20]))
  with pytest.raises(UserError, match="needs held-out text"):
    prepare.prepare(tiny_config(tokenizer_dir, **{"data.files": f"{tmp_path}/a.txt"}),
                    str(tmp_path / "no_eval"), families.FAMILIES["bert"].examples,
                    tokenizer=tokenizer_dir, log=lambda _: None)
    cloze.held_out_documents(str(tmp_path / "no_eval"), tok, 5, 32)


def test_show_fill_mask_is_refused_where_it_cannot_show():
  from configs import bert_base, gpt2
  c = gpt2.get_config("tiny")
  c.train.show_fill_mask = 2
  with pytest.raises(UserError, match="needs a masked LM"):
    cloze.check(c)
  c = bert_base.get_config("demo")
  c.train.show_fill_mask = -1
  with pytest.raises(UserError, match="train.show_fill_mask=-1"):
    cloze.check(c)
  cloze.check(config_lib.override(c, {"train.show_fill_mask": 0}))
