r"""Fine-tune a tiny BERT on the synthetic film reviews (lm_jax/data/reviews.py):
the CPU demo of fine-tuning, and what the tests and the Colab run.

  python -m lm_jax.data.reviews data/reviews
  python -m lm_jax.main --config=configs/bert_base.py:tiny --workdir=runs/reviews_lm \
      --config.data.files=data/reviews/unlabelled.jsonl --config.model.vocab_size=1000
  python -m lm_jax.main --config=configs/finetune_reviews.py --workdir=runs/reviews_cls \
      --config.init.from_workdir=runs/reviews_lm \
      --config.data.files=data/reviews/train.jsonl --config.data.eval_files=data/reviews/test.jsonl

Without init.from_workdir the same model starts from scratch (set
data.tokenizer to the pre-training run's tokenizer/ to compare fairly).
Variant `long`: the long reviews with the verdict at the end, read with
sliding windows (data.long_document=truncate sees only their start).
"""
from lm_jax.config import bert_model, finetune_config
from lm_jax.data import reviews


def get_config(variant=""):
  # The tiny BERT of configs/bert_base.py:tiny (replaced by init.from_workdir's when given).
  model = bert_model(vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=128)
  c = finetune_config(model, "sequence_classification", reviews.LABELS)
  c.data.update(text_keys="text", label_key="label", seq_len=64)
  c.train.update(steps=150, batch_size=32, learning_rate=1e-4, warmup_steps=15, log_every=10,
                 eval_every=50, checkpoint_every=50)
  if variant == "long":
    c.data.update(long_document="sliding_window", window_stride=32)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or long")
  return c
