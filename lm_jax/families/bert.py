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


def synthetic_batch(config, rng):
  """A BERT pre-training batch of the config's shapes, random content."""
  b, t, p = config.train.batch_size, config.data.seq_len, config.data.max_predictions_per_seq
  v = config.model.vocab_size
  positions = np.sort(np.stack([rng.choice(np.arange(1, t), p, replace=False) for _ in range(b)]), -1)
  return dict(input_ids=rng.integers(5, v, (b, t), dtype=np.int32),
              token_type_ids=(np.arange(t) >= t // 2).astype(np.int32)[None].repeat(b, 0),
              attention_mask=np.ones((b, t), np.int32),
              masked_positions=positions.astype(np.int32),
              masked_ids=rng.integers(5, v, (b, p), dtype=np.int32),
              masked_weights=np.ones((b, p), np.float32),
              nsp_labels=rng.integers(0, 2, (b,), dtype=np.int32))


def transformer_flops(model_cfg, seq_len, num_params, embedding_params):
  """The peer benchmark's formula, the same for lm_jax and PyTorch:
  6 * (N_non-embedding + V * d)   (matmuls forward + backward; the tied MLM
                                   decoder over every position)
  + 12 * L * T * d                (attention scores and values, fwd + bwd)."""
  d, v, layers = model_cfg.hidden_size, model_cfg.vocab_size, model_cfg.num_hidden_layers
  return 6 * (num_params - embedding_params + v * d) + 12 * layers * seq_len * d


def flops_per_token(config, params):
  """transformer_flops with lm_jax's parameter counts."""
  count = lambda tree: sum(x.size for x in _leaves(tree))
  return transformer_flops(config.model, config.data.seq_len, count(params),
                           count(params["bert"]["embeddings"]))


def _leaves(tree):
  return [x for v in tree.values() for x in (_leaves(v) if isinstance(v, dict) else [v])]


FAMILY = base.Family(
    name="bert", model=bert.BertForPreTraining, loss=losses.bert_pretraining,
    examples=encoder_examples.BertExamples, config_file="bert_base",
    check=base.check_transformer, progress_metrics=("loss", "mlm_accuracy", "nsp_accuracy"),
    validate_overrides=SMALLER_ENCODER, synthetic_batch=synthetic_batch,
    flops_per_token=flops_per_token)
