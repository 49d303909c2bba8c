r"""Fine-tune an encoder for named-entity recognition (token classification).

  python -m lm_jax.main --config=configs/finetune_ner.py --workdir=runs/ner \
      --config.init.from_hf=/path/to/bert-base-cased

Data: tensorflow-datasets conll2003 (words in `tokens`, tags in `ner`), or
local .jsonl files with a list of words and a list of tags per line:

  {"tokens": ["Emma", "visited", "Highbury", "."], "tags": ["B-PER", "O", "B-LOC", "O"]}
  --config.data.files=train.jsonl --config.data.eval_files=dev.jsonl \
      --config.data.text_keys=tokens --config.data.label_key=tags

Each word's tag is predicted at its first piece (as HF's run_ner does).
Metrics: entity-level precision / recall / F1 (conlleval's rules) and tag
accuracy, as eval_* in metrics.jsonl.
"""
from lm_jax.config import bert_model, finetune_config

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def get_config(variant=""):
  if variant:
    raise ValueError(f"finetune_ner.py has no variant {variant!r}; use it without one")
  c = finetune_config(bert_model(), "token_classification", CONLL_TAGS)
  c.data.update(tfds_name="conll2003", tfds_split="train", tfds_eval_split="dev",
                text_keys="tokens", label_key="ner", seq_len=128)
  c.train.update(steps=1_500, batch_size=32, learning_rate=5e-5, warmup_steps=150,
                 log_every=50, eval_every=500, checkpoint_every=500)
  return c
