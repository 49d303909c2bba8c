"""The Family record: everything the loop, inference, export, validate and bench
need to know about one model family (or one fine-tuning task)."""
import dataclasses
from typing import Any, Callable, Optional

from lm_jax import config as config_lib, evaluation

# How a Transformer runs, not what its parameters are: these may change between
# invocations on one workdir (dropout, compute dtype, attention kernel, remat).
ENCODER_RUNTIME_KEYS = ("dtype", "attention", "remat", "hidden_dropout_prob",
                        "classifier_dropout_prob", "attention_probs_dropout_prob")


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  model: Any      # Flax NNX module class, built as model(model_cfg, rngs=...)
  loss: Any       # loss(model, batch, dropout_key or None) -> (scalar, dict of metrics)
  # pipeline.Examples subclass: examples(material, tokenizer, data_cfg, seed) over a prepared
  # corpus; a fine-tuning task's take (records, tokenizer, data_cfg, seed, model.labels).
  examples: Any
  config_file: str = ""  # configs/<config_file>.py, whose `tiny` variant validate trains
  # Fine-tuning: read(data_cfg, split) -> the labelled records of a split, held in memory
  # (pre-training reads a prepared corpus: see the examples' LAYOUT).
  read: Optional[Callable] = None
  # evaluator(ms, config, mesh, rule_table, eval_data, loss) -> callable(params) -> {eval_*}.
  evaluator: Any = evaluation.HeldOutLoss
  inference: str = "masked_lm"  # the lm_jax.inference class `lm_jax.load` returns
  export_format: str = "hf"     # lm_jax.export --format: hf (safetensors) or elmo (HDF5)
  check: Callable = lambda config: None  # check(config): the family's own config checks (UserError)
  runtime_keys: tuple = ENCODER_RUNTIME_KEYS  # model keys that may change on resume
  progress_metrics: tuple = ("loss",)  # shown on the progress line, in this order
  validate_overrides: dict = dataclasses.field(default_factory=dict)  # validate's smaller tiny
  # The family's own vocabulary instead of a sentencepiece tokenizer: a module
  # with exists(dir) and load(config, dir) (data/prepare.py builds a new one).
  vocab: Any = None
  # A recurrent state carried from each train step to the next (stateful
  # LSTMs): initial_carry(config, batch_size) -> zero pytree [batch, ...], or
  # None; then loss(model, batch, key, carry) -> (scalar, (metrics, new carry)).
  initial_carry: Any = None
  # bench: synthetic_batch(config, rng) -> a train batch of random content;
  # flops_per_token(config, params) -> model FLOPs per trained token (fwd + bwd).
  synthetic_batch: Optional[Callable] = None
  flops_per_token: Optional[Callable] = None
  labelled: bool = False  # a fine-tuning task: labelled records in memory, not a prepared corpus


def trivial_metrics(config):
  """Metrics that say nothing in this run, left off the printed lines (metrics.jsonl
  keeps them): with data.nsp_probability=0 every NSP / SOP label is the same, so
  that accuracy is 1 and that loss near 0."""
  if config.data.nsp_probability:
    return set()
  return {"nsp_accuracy", "nsp_loss", "sop_accuracy", "sop_loss"}


def check_transformer(c):
  """The checks every Transformer family (and fine-tuning task) shares."""
  d, m = c.data, c.model
  config_lib.check(d.seq_len >= 8, f"data.seq_len={d.seq_len} is too short; use at least 8.")
  positions_key = "max_position_embeddings" if "max_position_embeddings" in m else "n_positions"
  config_lib.check(d.seq_len <= m[positions_key],
        f"data.seq_len={d.seq_len} is above model.{positions_key}="
        f"{m[positions_key]}; lower data.seq_len or raise the model's max positions.")
  config_lib.check(0 < d.mask_probability < 1, f"data.mask_probability={d.mask_probability} must be in (0, 1).")
  config_lib.check(0 < d.max_predictions_per_seq <= d.seq_len,
        f"data.max_predictions_per_seq={d.max_predictions_per_seq} must be in [1, data.seq_len].")
  config_lib.check(0 <= d.nsp_probability <= 1, f"data.nsp_probability={d.nsp_probability} must be in [0, 1].")
  config_lib.check(not (d.files and d.tfds_name), "Set only one of data.files and data.tfds_name.")
  hidden, heads = config_lib.size(m, "hidden_size"), config_lib.size(m, "num_attention_heads")
  config_lib.check(hidden % heads == 0,
        f"model hidden size {hidden} is not divisible by the {heads} attention heads; "
        "pick a head count that divides it.")
  config_lib.check(m.dtype in config_lib.DTYPES, f"model.dtype={m.dtype!r} is not one of {config_lib.DTYPES}.")
  config_lib.check(m.attention in config_lib.ATTENTION,
        f"model.attention={m.attention!r} is not one of {config_lib.ATTENTION}.")
  config_lib.check(m.remat in config_lib.REMAT, f"model.remat={m.remat!r} is not one of {config_lib.REMAT}.")
  config_lib.check(m.vocab_size > 8, f"model.vocab_size={m.vocab_size} is too small.")
