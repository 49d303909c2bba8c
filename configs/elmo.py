r"""ELMo (bilm-tf's biLM: char CNN + 2-layer biLSTM LMs), variants tiny / small / original.

  python -m lm_jax.main --config=configs/elmo.py:tiny --workdir=runs/elmo_tiny
  python -m lm_jax.export --workdir=runs/elmo_tiny --format=elmo --out=elmo_tiny/
  # simple_elmo: ElmoModel().load("elmo_tiny/");  AllenNLP: Elmo(options.json, weights.hdf5, 1)

tiny (CPU demo): 128-wide tokens from 4 char filters, 2 biLSTM layers of 256
cells projected to 64, an 8000-word vocabulary built from the embedded Austen
corpus, 1024 sampled negatives; 600 steps of 32 streams x 20 tokens. Forward and
backward held-out (Persuasion) perplexities fall from ~8000 to a few hundred.

  python -m lm_jax.main --config=configs/elmo.py:original --workdir=runs/elmo \
      --config.data.files='/data/corpus/*.txt.gz' --config.data.eval_files='/data/heldout/*.txt'

original (the default): bilm-tf's published hyper-parameters (bin/train_elmo.py):
char filters [1,32] .. [7,1024] over 16-dim characters, 50 characters per
token, 2 highway layers, projection 512; 2 layers of 4096 LSTM cells projected
to 512, cell/projection clipping 3, residual connection, dropout 0.1, 8192
sampled negatives, 20 unroll steps, 384 streams a batch (128 on each of its 3
GPUs, whose gradients bilm-tf averages), state carried across batches.
data.files: tokenised text, one sentence per line (LTG's format), optionally
gzipped; the vocabulary is built from it (set model.vocab_size; bilm-tf's 1B-word
vocabulary has 793471 words) unless data.tokenizer names a directory with vocab.txt.

original trains with bilm-tf's optimizer (bilm/training.py: train, clip_grads):
Adagrad at a constant lr 0.2 (no warm-up, no decay, no weight decay), initial
accumulator 1.0, the global gradient norm clipped at 10 (all_clip_norm_val).
bilm-tf differentiates loss * unroll_steps (20) where lm_jax differentiates the
mean loss, so its gradients are 20x lm_jax's; Adagrad on 20g from accumulator a
takes the same steps as on g from a / 20^2, and clipping 20g at 10 is clipping g
at 10 / 20, so the config sets adagrad_initial_accumulator_value=1/400 and
max_grad_norm=0.5: bilm-tf's updates (up to optax's eps, 1e-7 under the root;
with another data.seq_len T use 1/T^2 and 10/T). 1M steps are bilm-tf's 10 epochs
of the 1B Word Benchmark (768,648,884 tokens, 384 x 20 a batch).

small: AllenNLP's "small" ELMo (2x1024 cells, projection 128, 1 highway), trained
with Adam like tiny.

data.seq_len is bilm-tf's unroll_steps; data.stateful carries the LSTM state
from batch to batch (row r of batch k continues row r of batch k-1).
"""
from lm_jax.config import base_config, elmo_model


def get_config(variant="original"):
  c = base_config()
  variant = variant or "original"
  c.data.update(seq_len=20, stateful=True)
  c.train.update(weight_decay=0.0, max_grad_norm=10.0)
  if variant == "tiny":
    c.model = elmo_model(vocab_size=8000, char_embedding_dim=16,
                         filters=[[1, 16], [2, 16], [3, 32], [4, 64]], n_highway=1,
                         projection_dim=64, lstm_dim=256, n_negative_samples=1024)
    c.train.update(steps=600, batch_size=32, learning_rate=2e-3, warmup_steps=30,
                   log_every=50, eval_every=200, eval_steps=4, checkpoint_every=200)
  elif variant == "small":
    c.model = elmo_model(n_highway=1, projection_dim=128, lstm_dim=1024)
    c.train.update(steps=1_000_000, batch_size=128, learning_rate=1e-3, warmup_steps=2000,
                   log_every=100, eval_every=10_000, checkpoint_every=10_000)
  elif variant == "original":
    c.model = elmo_model()
    c.train.update(steps=1_000_000, batch_size=384, optimizer="adagrad", learning_rate=0.2,
                   schedule="constant", warmup_steps=0, adagrad_initial_accumulator_value=1 / 20**2,
                   max_grad_norm=10.0 / 20, log_every=100, eval_every=10_000,
                   checkpoint_every=10_000)
  else:
    raise ValueError(f"unknown variant {variant!r}; use tiny, small or original")
  return c
