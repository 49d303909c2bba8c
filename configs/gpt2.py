r"""GPT-2 causal-LM pre-training, variants tiny / small / medium / large / xl.

  python -m lm_jax.main --config=configs/gpt2.py:tiny --workdir=runs/gpt-tiny
  python -m lm_jax.generate --workdir=runs/gpt-tiny --prompt="Emma was"

tiny (CPU demo): 2 layers, width 128, seq 128, batch 16, 300 steps on the
embedded Austen corpus (chapters packed into windows, separated by [SEP]).
Measured: 1.5 minutes of CPU time with the tokenizer (8 minutes of wall time
on 2 cores shared with other jobs, 1.4-2.7k tokens/s); the loss falls from
~9.0 to ~5.3 and held-out (Persuasion) perplexity reaches ~260 with 14%
next-token accuracy: common words and short phrases, no sense yet
("Emma was not be a very much to be a very much to").

  python -m lm_jax.main --config=configs/gpt2.py:small --workdir=gs://bucket/gpt2 \
      --config.data.tfds_name=openwebtext

small / medium / large / xl: GPT-2's 124M / 355M / 774M / 1.5B shapes
(12/768/12, 24/1024/16, 36/1280/20, 48/1600/25), 1024 positions, a
50257-piece vocabulary, Adam lr 6e-4 (small; lower for the larger ones),
2000 warm-up steps, weight decay 0.1, batch 512 x 1024 tokens, bf16
compute. They need a real corpus: the embedded one is too small for their
vocabulary.
"""
from lm_jax.config import base_config, gpt2_model

# variant: (n_layer, n_embd, n_head, peak learning rate)
SIZES = dict(small=(12, 768, 12, 6e-4), medium=(24, 1024, 16, 3e-4),
             large=(36, 1280, 20, 2.5e-4), xl=(48, 1600, 25, 2e-4))


def get_config(variant="small"):
  c = base_config()
  variant = variant or "small"
  c.train.update(adam_b2=0.95, adam_eps=1e-8)
  if variant == "tiny":
    c.model = gpt2_model(vocab_size=8000, n_positions=128, n_embd=128, n_layer=2, n_head=2)
    c.data.seq_len = 128
    c.train.update(steps=300, batch_size=16, learning_rate=1e-3, warmup_steps=30,
                   log_every=20, eval_every=100, eval_steps=4, checkpoint_every=100)
  elif variant in SIZES:
    n_layer, n_embd, n_head, lr = SIZES[variant]
    c.model = gpt2_model(n_layer=n_layer, n_embd=n_embd, n_head=n_head, dtype="bfloat16",
                         scan_layers=True)
    c.data.seq_len = 1024
    c.train.update(steps=600_000, batch_size=512, learning_rate=lr, warmup_steps=2000,
                   weight_decay=0.1, log_every=100, eval_every=10_000, checkpoint_every=10_000)
  else:
    raise ValueError(f"unknown variant {variant!r}; use tiny, small, medium, large or xl")
  return c
