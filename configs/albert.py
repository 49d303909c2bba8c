r"""ALBERT pre-training (MLM + sentence-order prediction), variants tiny / base / large.

  python -m lm_jax.main --config=configs/albert.py:tiny --workdir=runs/albert_tiny
  python -m lm_jax.export --workdir=runs/albert_tiny --out=exported/albert_tiny
  # PyTorch: AutoModelForPreTraining.from_pretrained("exported/albert_tiny")  (AlbertForPreTraining)

tiny (CPU demo): embeddings 64 projected to hidden 128, one shared layer run
4 times, seq 128, batch 32, 300 steps on the embedded Austen corpus.
The 300-step loss and speed are not measured yet; tests/test_encoders.py
checks that a 30-step, hidden-64 version's MLM loss falls by more than 0.3.

ALBERT's two ideas are in the model: a factorised embedding (vocab x
embedding_size, then embedding_size -> hidden_size) and one layer's
parameters shared by every depth. Its sentence-order objective replaces
NSP: A and B are consecutive text of one document, swapped with
probability data.nsp_probability (0.5), and the model says which order it
sees.

base (the default): ALBERT-base (12 repeats, hidden 768, embeddings 128,
vocab 30000), seq 512, batch 4096, peak lr 1.76e-3, 125k steps.
large: hidden 1024, 24 repeats, 16 heads. Both need a real corpus.
Both train as the paper does (Lan et al. 2019, arXiv:1909.11942, section 4.1:
"a batch size of 4096 and a LAMB optimizer with learning rate 0.00176", 125,000
steps) with google-research/albert's settings (run_pretraining.py, optimization.py):
3125 warm-up steps then linear decay, LAMB b1 0.9, b2 0.999, eps 1e-6, weight decay
0.01, neither decay nor trust ratio on biases and LayerNorm, gradients clipped at
norm 1.0 (optax bias-corrects Adam's moments, as the LAMB paper's Algorithm 2
does; ALBERT's lamb_optimizer.py does not). tiny keeps AdamW: LAMB's steps are relative to each weight's norm, so
its measured lr 1e-3 would barely move a 300-step model (try
--config.train.optimizer=lamb --config.train.learning_rate=2e-2).
"""
from lm_jax.config import albert_model, base_config


def get_config(variant="base"):
  c = base_config()
  variant = variant or "base"
  if variant == "tiny":
    c.model = albert_model(vocab_size=8000, embedding_size=64, hidden_size=128,
                           num_hidden_layers=4, num_attention_heads=2, intermediate_size=512,
                           max_position_embeddings=128)
    c.train.update(steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30,
                   log_every=20, eval_every=100, eval_steps=4, checkpoint_every=100)
  elif variant in ("base", "large"):
    sizes = (dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072) if variant == "base" else
             dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096))
    c.model = albert_model(dtype="bfloat16", **sizes)
    c.data.update(seq_len=512, max_predictions_per_seq=20)
    c.train.update(steps=125_000, batch_size=4096, learning_rate=1.76e-3, warmup_steps=3125,
                   optimizer="lamb", weight_decay=0.01, max_grad_norm=1.0,
                   log_every=100, eval_every=10_000, checkpoint_every=10_000)
  else:
    raise ValueError(f"unknown variant {variant!r}; use tiny, base or large")
  return c
