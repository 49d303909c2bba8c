"""RoBERTa <-> HF `RobertaForMaskedLM`: the name table and the config mapping.

HF RoBERTa has no pooler in its MLM model, one token type, and position
ids offset by pad_token_id + 1 (models/roberta.py), so config.json's
pad_token_id must be the one our model counts from.
"""
from lm_jax import config as config_lib
from lm_jax.data import hf_tokenizer
from lm_jax.errors import UserError
from lm_jax.interop import hf

FAMILY = "roberta"
MODEL_TYPE = "roberta"
ARCHITECTURE = "RobertaForMaskedLM"
_LAYER = (
    *hf.linear("attention.self.query"), *hf.linear("attention.self.key"),
    *hf.linear("attention.self.value"), *hf.linear("attention.output.dense"),
    *hf.layer_norm("attention.output.LayerNorm"), *hf.linear("intermediate.dense"),
    *hf.linear("output.dense"), *hf.layer_norm("output.LayerNorm"),
)

TABLE = hf.NameTable(
    tensors=(
        *hf.embedding("roberta.embeddings.word_embeddings"),
        *hf.embedding("roberta.embeddings.position_embeddings"),
        *hf.embedding("roberta.embeddings.token_type_embeddings"),
        *hf.layer_norm("roberta.embeddings.LayerNorm"),
        *hf.linear("lm_head.dense"),
        *hf.layer_norm("lm_head.layer_norm"),
        hf.Tensor("lm_head.bias", "lm_head.bias"),
    ),
    layers="roberta.encoder.layer",
    layer_tensors=_LAYER,
    base_prefix="roberta.",
    heads=("lm_head.",),
    ignored=(r"lm_head\.decoder\.(weight|bias)",            # tied copies
             r"roberta\.pooler\.dense\.(weight|bias)",       # RobertaModel's pooler: no use in MLM
             r"roberta\.embeddings\.(position_ids|token_type_ids)"),
)

ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size",
                     "layer_norm_eps", "pad_token_id")
SHARED_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")
_FIXED = dict(hidden_act="gelu", position_embedding_type="absolute", is_decoder=False,
              add_cross_attention=False, tie_word_embeddings=True)

model_section = config_lib.roberta_model


def shapes(cfg):
  """{HF name: shape} config.json implies for the tensors carrying its sizes."""
  return {**hf.embedding_shapes("roberta.", cfg, cfg.hidden_size),
          **hf.layer_shapes("roberta.encoder.layer.0.", cfg.hidden_size, cfg.intermediate_size)}


def model_config(hf_config, path):
  return hf.take_config(hf_config, path, ARCHITECTURE_KEYS, _FIXED, "RoBERTa")


def hf_config(model_cfg, tokenizer, dtype):
  if tokenizer.pad_id != model_cfg.pad_token_id:
    raise UserError(f"The tokenizer's pad id is {tokenizer.pad_id} but model.pad_token_id="
                    f"{model_cfg.pad_token_id}; RoBERTa's positions depend on it, so retrain "
                    "with --config.model.pad_token_id matching the tokenizer.")
  return dict(architectures=[ARCHITECTURE], model_type=MODEL_TYPE, dtype=dtype,
              **{k: model_cfg[k] for k in ARCHITECTURE_KEYS + SHARED_KEYS}, **_FIXED,
              bos_token_id=tokenizer.cls_id, eos_token_id=tokenizer.sep_id)


def save_tokenizer(tokenizer, out_dir, model_cfg):
  """The tokenizer files, with model_max_length the inputs RoBERTa's positions allow."""
  hf_tokenizer.save(tokenizer, out_dir, config_lib.max_sequence_length(model_cfg))
