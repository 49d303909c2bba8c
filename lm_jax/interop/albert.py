"""ALBERT <-> HF `AlbertForPreTraining`: the name table and the config mapping.

ALBERT's one shared layer lives at `albert.encoder.albert_layer_groups.0.
albert_layers.0` on both sides (HF num_hidden_groups = inner_group_num = 1;
other groupings are refused on import), so the table has no repeated layers.
"""
from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.interop import hf
from lm_jax.models.albert import ACTIVATIONS

FAMILY = "albert"
MODEL_TYPE = "albert"
ARCHITECTURE = "AlbertForPreTraining"
_SHARED_LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0."

TABLE = hf.NameTable(
    tensors=(
        *hf.embedding("albert.embeddings.word_embeddings"),
        *hf.embedding("albert.embeddings.position_embeddings"),
        *hf.embedding("albert.embeddings.token_type_embeddings"),
        *hf.layer_norm("albert.embeddings.LayerNorm"),
        *hf.linear("albert.encoder.embedding_hidden_mapping_in"),
        *(t for name in ("attention.query", "attention.key", "attention.value", "attention.dense",
                         "ffn", "ffn_output") for t in hf.linear(_SHARED_LAYER + name)),
        *hf.layer_norm(_SHARED_LAYER + "attention.LayerNorm"),
        *hf.layer_norm(_SHARED_LAYER + "full_layer_layer_norm"),
        *hf.linear("albert.pooler"),
        *hf.linear("predictions.dense"),
        *hf.layer_norm("predictions.LayerNorm"),
        hf.Tensor("predictions.bias", "predictions.bias"),
        *hf.linear("sop_classifier.classifier"),
    ),
    layers="albert.encoder.albert_layer_groups",
    layer_tensors=(),
    base_prefix="albert.",
    heads=("albert.pooler.", "predictions.", "sop_classifier."),
    ignored=(r"predictions\.decoder\.(weight|bias)",  # tied copies
             r"albert\.embeddings\.(position_ids|token_type_ids)"),
)

ARCHITECTURE_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "max_position_embeddings",
                     "type_vocab_size", "layer_norm_eps", "hidden_act")
SHARED_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range",
               "classifier_dropout_prob")
_FIXED = dict(num_hidden_groups=1, inner_group_num=1, position_embedding_type="absolute",
              tie_word_embeddings=True)

model_section = config_lib.albert_model


def shapes(cfg):
  """{HF name: shape} config.json implies for the tensors carrying its sizes."""
  return {**hf.embedding_shapes("albert.", cfg, cfg.embedding_size),
          "albert.encoder.embedding_hidden_mapping_in.weight": (cfg.hidden_size,
                                                                cfg.embedding_size),
          _SHARED_LAYER + "attention.query.weight": (cfg.hidden_size, cfg.hidden_size),
          _SHARED_LAYER + "ffn.weight": (cfg.intermediate_size, cfg.hidden_size)}


def model_config(hf_config, path):
  taken = hf.take_config(hf_config, path, ARCHITECTURE_KEYS, _FIXED, "ALBERT")
  if taken["hidden_act"] not in ACTIVATIONS:
    raise UserError(f"{path}/config.json has hidden_act={taken['hidden_act']!r}, but lm_jax's "
                    f"ALBERT implements only {sorted(ACTIVATIONS)}.")
  return taken


def hf_config(model_cfg, tokenizer, dtype):
  return dict(architectures=[ARCHITECTURE], model_type=MODEL_TYPE, dtype=dtype,
              **{k: model_cfg[k] for k in ARCHITECTURE_KEYS + SHARED_KEYS}, **_FIXED,
              pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.cls_id,
              eos_token_id=tokenizer.sep_id)
