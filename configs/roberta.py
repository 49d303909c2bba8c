r"""RoBERTa pre-training (MLM only, dynamic masking, full-sentence packing),
variants tiny / base / large.

  python -m lm_jax.main --config=configs/roberta.py:tiny --workdir=runs/roberta_tiny
  python -m lm_jax.export --workdir=runs/roberta_tiny --out=exported/roberta_tiny
  # PyTorch: AutoModelForMaskedLM.from_pretrained("exported/roberta_tiny")  (RobertaForMaskedLM)

tiny (CPU demo): 2 layers, hidden 128, seq 128, batch 32, 300 steps on the
embedded Austen corpus. The
300-step loss and speed are not measured yet; tests/test_encoders.py checks
that a 30-step, hidden-64 version's MLM loss falls by more than 0.3.

Inputs are RoBERTa's FULL-SENTENCES: `[CLS] sentences ... [SEP]` filling
seq_len with consecutive sentences that run on into the next document after
a [SEP]; no next-sentence objective, one token type, a new mask every epoch.
Position ids start at pad_token_id + 1 as in HF, so max_position_embeddings
is seq_len + 2 (pad_token_id 0 for lm_jax's tokenizer; an imported HF
RoBERTa keeps its own, 1).

base (the default): RoBERTa-base 12/768/12 with the paper's recipe: seq 512,
batch 8k, peak lr 6e-4, 24k warm-up steps, 500k steps, Adam b2 0.98.
large: 24/1024/16, lr 4e-4. Both need a real corpus (data.tfds_name or
data.files) and, for the paper's vocabulary, data.tokenizer pointing at an
HF RoBERTa tokenizer.json.
"""
from lm_jax.config import base_config, roberta_model


def get_config(variant="base"):
  c = base_config()
  variant = variant or "base"
  if variant == "tiny":
    c.model = roberta_model(vocab_size=8000, hidden_size=128, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=512,
                            max_position_embeddings=130)
    c.train.update(steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30,
                   log_every=20, eval_every=100, eval_steps=4, checkpoint_every=100)
  elif variant in ("base", "large"):
    sizes = (dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072) if variant == "base" else
             dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096))
    c.model = roberta_model(dtype="bfloat16", **sizes)
    c.data.update(seq_len=512, max_predictions_per_seq=80)
    c.train.update(steps=500_000, batch_size=8192, learning_rate=6e-4 if variant == "base" else 4e-4,
                   warmup_steps=24_000, adam_b2=0.98, log_every=100, eval_every=10_000,
                   checkpoint_every=10_000)
  else:
    raise ValueError(f"unknown variant {variant!r}; use tiny, base or large")
  return c
