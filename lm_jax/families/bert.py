"""BERT: a Transformer encoder pre-trained with masked LM + next-sentence prediction."""
import numpy as np

from lm_jax.data import encoder_examples
from lm_jax.families import base
from lm_jax.models import bert
from lm_jax.objectives import losses

# validate's tiny encoder, smaller still: seconds per run on 2 CPU cores.
SMALLER_ENCODER = {"model.hidden_size": 64, "model.intermediate_size": 128,
                   "model.max_position_embeddings": 64, "data.seq_len": 64,
                   "data.max_predictions_per_seq": 10}


def masked_lm_batch(config, rng):
  """The inputs and MLM targets every encoder family trains on, random content:
  full rows (no padding, one token type), data.max_predictions_per_seq distinct
  masked positions a row, all of weight 1 (the most work a batch can ask)."""
  b, t, p = config.train.batch_size, config.data.seq_len, config.data.max_predictions_per_seq
  v = config.model.vocab_size
  positions = np.sort(np.stack([rng.choice(np.arange(1, t), p, replace=False) for _ in range(b)]), -1)
  return dict(input_ids=rng.integers(5, v, (b, t), dtype=np.int32),  # 0..4: special pieces
              token_type_ids=np.zeros((b, t), np.int32),
              attention_mask=np.ones((b, t), np.int32),
              masked_positions=positions.astype(np.int32),
              masked_ids=rng.integers(5, v, (b, p), dtype=np.int32),
              masked_weights=np.ones((b, p), np.float32))


def sentence_pair_batch(config, rng, label_key):
  """masked_lm_batch as `[CLS] A [SEP] B [SEP]` pairs (token type 1 from the middle)
  with a two-way sentence label `label_key` (BERT's nsp_labels, ALBERT's sop_labels)."""
  batch = masked_lm_batch(config, rng)
  batch["token_type_ids"][:, config.data.seq_len // 2:] = 1
  batch[label_key] = rng.integers(0, 2, (config.train.batch_size,), dtype=np.int32)
  return batch


def synthetic_batch(config, rng):
  """A BERT pre-training batch of the config's shapes, random content."""
  return sentence_pair_batch(config, rng, "nsp_labels")


def layer_params(d, ff):
  """Parameters of one encoder layer of width d and MLP width ff: the Q, K, V and
  output projections, the MLP's two matmuls, two LayerNorms (weights and biases)."""
  return 4 * (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d


def transformer_flops(n, layers, seq_len, d):
  """6 * n + 12 * L * T * d: the bench's FLOPs per token of a Transformer, where n
  counts the parameters a token meets (each a multiply-add forward, two backward:
  6 FLOPs) and 12 * L * T * d the attention scores QK^T and values AV (2 * T * d
  multiply-adds per token and layer, forward + backward)."""
  return 6 * n + 12 * layers * seq_len * d


def flops_per_token(config, params=None):
  """BERT: 6 * (N_non-embedding + V * d) + 12 * L * T * d, where N_non-embedding =
  L encoder layers + pooler + NSP classifier + MLM transform (dense, LayerNorm) +
  decoder bias, and V * d is the tied MLM decoder over every position (as the HF
  peer computes it; lm_jax decodes only the masked positions, so it does less).

  An analytic count from the config (`params` is unused): the PyTorch peer
  (lm_jax/bench_peer.py) calls this same function, so both sides count the same
  FLOPs. It equals the parameters of lm_jax's tree less the embeddings (word,
  position and token-type tables and their LayerNorm); tests/test_bench.py checks."""
  del params
  m = config.model
  d, v, n_layers = m.hidden_size, m.vocab_size, m.num_hidden_layers
  n = (n_layers * layer_params(d, m.intermediate_size)
       + (d * d + d) + (2 * d + 2)    # pooler, NSP classifier
       + (d * d + d + 2 * d) + v)     # MLM transform (dense, LayerNorm), decoder bias
  return transformer_flops(n + v * d, n_layers, config.data.seq_len, d)


FAMILY = base.Family(
    name="bert", model=bert.BertForPreTraining, loss=losses.bert_pretraining,
    examples=encoder_examples.BertExamples, config_file="bert_base",
    check=base.check_transformer, progress_metrics=("loss", "mlm_accuracy", "nsp_accuracy"),
    validate_overrides=SMALLER_ENCODER, synthetic_batch=synthetic_batch,
    flops_per_token=flops_per_token)
