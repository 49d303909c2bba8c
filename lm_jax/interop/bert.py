"""BERT <-> HF `BertForPreTraining`: the name table and the config mapping.

Our module names are HF's, so the table lists each tensor once; only the
leaf names and the Linear transposes differ (see interop/hf.py). The MLM
decoder is tied to the word embeddings: HF's `save_pretrained` writes only
`cls.predictions.bias` for it, and so do we.
"""
from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.interop import hf

FAMILY = "bert"
MODEL_TYPE = "bert"
ARCHITECTURE = "BertForPreTraining"

TABLE = hf.NameTable(
    tensors=(
        *hf.embedding("bert.embeddings.word_embeddings"),
        *hf.embedding("bert.embeddings.position_embeddings"),
        *hf.embedding("bert.embeddings.token_type_embeddings"),
        *hf.layer_norm("bert.embeddings.LayerNorm"),
        *hf.linear("bert.pooler.dense"),
        *hf.linear("cls.predictions.transform.dense"),
        *hf.layer_norm("cls.predictions.transform.LayerNorm"),
        hf.Tensor("cls.predictions.bias", "cls.predictions.bias"),
        *hf.linear("cls.seq_relationship"),
    ),
    layers="bert.encoder.layer",
    layer_tensors=(
        *hf.linear("attention.self.query"),
        *hf.linear("attention.self.key"),
        *hf.linear("attention.self.value"),
        *hf.linear("attention.output.dense"),
        *hf.layer_norm("attention.output.LayerNorm"),
        *hf.linear("intermediate.dense"),
        *hf.linear("output.dense"),
        *hf.layer_norm("output.LayerNorm"),
    ),
    base_prefix="bert.",
    heads=("bert.pooler.", "cls.predictions.", "cls.seq_relationship."),
    ignored=(r"cls\.predictions\.decoder\.(weight|bias)",  # tied copies
             r"bert\.embeddings\.position_ids"),           # a buffer in older checkpoints
)

# Model keys that fix the parameters' shapes and the computation: they come
# from an imported config.json. The rest (dropout, dtype, scan_layers, ...)
# stay as the run's config sets them.
ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size",
                     "layer_norm_eps")
# The other BertConfig keys our model section shares.
SHARED_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")

# HF BertConfig options our model does not implement, with the value it has.
_FIXED = dict(hidden_act="gelu", position_embedding_type="absolute", is_decoder=False,
              add_cross_attention=False, tie_word_embeddings=True)


# Our model section with its defaults.
model_section = config_lib.bert_model


def shapes(cfg):
  """{HF name: shape} config.json implies for the tensors carrying its sizes
  (checked by hf.check_config before a model is built)."""
  return {**hf.embedding_shapes("bert.", cfg, cfg.hidden_size),
          **hf.layer_shapes("bert.encoder.layer.0.", cfg.hidden_size, cfg.intermediate_size)}


def model_config(hf_config, path):
  """The architecture keys of our model section (a dict), from an HF config dict."""
  for key, ours in _FIXED.items():
    theirs = hf_config.get(key, ours)
    if theirs != ours:
      raise UserError(f"{path}/config.json has {key}={theirs!r}, but lm_jax's BERT implements "
                      f"only {key}={ours!r}.")
  absent = [k for k in ARCHITECTURE_KEYS if k not in hf_config]
  if absent:
    raise UserError(f"{path}/config.json lacks {absent[0]}; it is not a complete BertConfig.")
  return {k: hf_config[k] for k in ARCHITECTURE_KEYS}


def hf_config(model_cfg, tokenizer, dtype):
  """HF's config.json for our model section."""
  return dict(architectures=[ARCHITECTURE], model_type=MODEL_TYPE, dtype=dtype,
              **{k: model_cfg[k] for k in ARCHITECTURE_KEYS + SHARED_KEYS}, **_FIXED,
              pad_token_id=tokenizer.pad_id)
