r"""Fine-tune a tiny BERT on the synthetic film reviews (lm_jax/data/reviews.py):
the CPU demo of fine-tuning, and what the tests and the Colab run. The
tokenizer is an 8000-piece one trained on the embedded corpus (e.g. runs/tiny's, from
`configs/bert_base.py:tiny`): the reviews alone are too small a corpus for 8000 pieces.

  python -m lm_jax.data.reviews data/reviews
  python -m lm_jax.main --config=configs/bert_base.py:tiny --workdir=runs/reviews_lm \
      --config.data.files=data/reviews/unlabelled.jsonl --config.model.hidden_size=64 \
      --config.model.intermediate_size=256 --config.data.seq_len=32 \
      --config.train.learning_rate=2e-3 --config.train.steps=2000
  python -m lm_jax.main --config=configs/finetune_reviews.py --workdir=runs/reviews_cls \
      --config.init.from_workdir=runs/reviews_lm \
      --config.data.files=data/reviews/train.jsonl --config.data.eval_files=data/reviews/test.jsonl

Measured on 2 CPU cores (tests/test_finetune.py): the pre-training takes
about a minute and gets past MLM's unigram plateau (MLM accuracy ~0.54);
fine-tuned from it, 100 steps reach 100% accuracy on test reviews whose
opinion words the labelled reviews never use, while the same model from a
random initialisation (data.tokenizer set to the same tokenizer) stays at
chance (~0.47). Variant `long`: ~250-word reviews with the verdict at the
end, read by 128-piece sliding windows: 0.91 accuracy where truncation,
which sees only the start, gets 0.49.
"""
from lm_jax.config import bert_model, finetune_config
from lm_jax.data import reviews


def get_config(variant=""):
  # The tiny BERT of configs/bert_base.py:tiny (replaced by init.from_workdir's when given).
  model = bert_model(vocab_size=8000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256, max_position_embeddings=128)
  c = finetune_config(model, "sequence_classification", reviews.LABELS)
  c.data.update(text_keys="text", label_key="label", seq_len=32)
  c.train.update(steps=100, batch_size=32, learning_rate=3e-4, warmup_steps=10, log_every=10,
                 eval_every=50, checkpoint_every=50)
  if variant == "long":
    c.data.update(long_document="sliding_window", seq_len=128, window_stride=64)
    c.train.update(steps=150)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or long")
  return c
