r"""Fine-tune an encoder on IMDB reviews (tensorflow-datasets imdb_reviews),
reading each review whole with sliding windows.

  python -m lm_jax.main --config=configs/finetune_imdb.py --workdir=runs/imdb \
      --config.init.from_hf=/path/to/bert-base-uncased
  ... --config.data.long_document=head_tail    # or truncate, to compare

IMDB reviews average ~300 words and many run past 512 pieces, so a
128-piece window (truncate) misses most of a long review: the gap to
ULMFiT reported for BERT at 128 tokens. sliding_window cuts each review
into overlapping 512-piece windows (stride 256), trains on every window
with the review's label and averages the windows' logits per review at
evaluation; head_tail keeps the first 128 and last 382 pieces (Sun et al.,
2019). The dataset must be prepared beforehand (`tfds build imdb_reviews`).
"""
from lm_jax.config import bert_model, finetune_config


def get_config(variant=""):
  if variant:
    raise ValueError(f"finetune_imdb.py has no variant {variant!r}; use it without one")
  c = finetune_config(bert_model(), "sequence_classification", ("neg", "pos"))
  c.data.update(tfds_name="imdb_reviews", tfds_split="train", tfds_eval_split="test",
                text_keys="text", label_key="label", seq_len=512,
                long_document="sliding_window", window_stride=256)
  c.train.update(steps=4_000, batch_size=32, learning_rate=2e-5, warmup_steps=400,
                 log_every=50, eval_every=2_000, checkpoint_every=1_000)
  return c
