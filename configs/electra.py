r"""ELECTRA pre-training (generator MLM + discriminator replaced-token detection),
variants tiny / small / base / large.

  python -m lm_jax.main --config=configs/electra.py:tiny --workdir=runs/electra_tiny
  python -m lm_jax.export --workdir=runs/electra_tiny --out=exported/electra_tiny
  # PyTorch: AutoModelForPreTraining.from_pretrained("exported/electra_tiny")  (ElectraForPreTraining,
  #          the discriminator) and AutoModelForMaskedLM.from_pretrained("exported/electra_tiny/generator")

The export writes the discriminator to OUT and the generator to OUT/generator
(ElectraForMaskedLM); lm_jax.load(OUT) reads both back.

tiny (CPU demo): discriminator 2 layers of hidden 128, generator 2 layers of
hidden 32, shared embeddings of size 128, seq 128, batch 32, 300 steps on the
embedded Austen corpus. The
300-step loss and speed are not measured yet; tests/test_encoders.py checks
that a 30-step, hidden-64 version's MLM loss falls by more than 0.3.

A generator (a small MLM) fills the masked positions with samples from its
output distribution (no gradient through the sampling); the discriminator
labels every token original or replaced, its loss weighted by
model.discriminator_weight (50). Generator and discriminator share the
embeddings. Inputs are full-sentence packed, one token type.

small: ELECTRA-Small (12 layers, hidden 256, embeddings 128, generator
hidden 64), seq 128, batch 128, lr 5e-4, 1M steps. base: 12/768/12,
generator 256, seq 512, batch 256, lr 2e-4, 766k steps. large: 24/1024/16,
generator 256, batch 2048, lr 2e-4, 400k steps, 25% masking. All but tiny
need a real corpus.
"""
from lm_jax.config import base_config, electra_model


def get_config(variant="base"):
  c = base_config()
  variant = variant or "base"
  if variant == "tiny":
    c.model = electra_model(vocab_size=8000, embedding_size=128, hidden_size=128,
                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                            generator_hidden_size=32, generator_num_hidden_layers=2,
                            generator_num_attention_heads=1, generator_intermediate_size=128,
                            max_position_embeddings=128)
    c.train.update(steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30,
                   log_every=20, eval_every=100, eval_steps=4, checkpoint_every=100)
  elif variant == "small":
    c.model = electra_model(embedding_size=128, hidden_size=256, num_attention_heads=4,
                            intermediate_size=1024, generator_hidden_size=64,
                            generator_num_attention_heads=1, generator_intermediate_size=256)
    c.train.update(steps=1_000_000, batch_size=128, learning_rate=5e-4, warmup_steps=10_000,
                   log_every=100, eval_every=10_000, checkpoint_every=10_000)
  elif variant == "base":
    c.model = electra_model(dtype="bfloat16")
    c.data.update(seq_len=512, max_predictions_per_seq=79)
    c.train.update(steps=766_000, batch_size=256, learning_rate=2e-4, warmup_steps=10_000,
                   log_every=100, eval_every=10_000, checkpoint_every=10_000)
  elif variant == "large":
    c.model = electra_model(embedding_size=1024, hidden_size=1024, num_hidden_layers=24,
                            num_attention_heads=16, intermediate_size=4096,
                            generator_num_hidden_layers=24, dtype="bfloat16")
    c.data.update(seq_len=512, mask_probability=0.25, max_predictions_per_seq=128)
    c.train.update(steps=400_000, batch_size=2048, learning_rate=2e-4, warmup_steps=10_000,
                   log_every=100, eval_every=10_000, checkpoint_every=10_000)
  else:
    raise ValueError(f"unknown variant {variant!r}; use tiny, small, base or large")
  return c
