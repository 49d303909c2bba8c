"""ELECTRA <-> HF: the discriminator as `ElectraForPreTraining` in the export
directory, the generator as `ElectraForMaskedLM` in its generator/ subdirectory.

Both HF models carry `electra.embeddings.*`; ours are shared, so both
directories get the same tensors and import reads them from the
discriminator. A discriminator-only directory (as on the hub) imports with
a freshly initialised generator of the model section's generator sizes.
"""
import os

from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.interop import hf

FAMILY = "electra"
MODEL_TYPE = "electra"
GENERATOR_DIR = "generator"
_LAYER = (
    *hf.linear("attention.self.query"), *hf.linear("attention.self.key"),
    *hf.linear("attention.self.value"), *hf.linear("attention.output.dense"),
    *hf.layer_norm("attention.output.LayerNorm"), *hf.linear("intermediate.dense"),
    *hf.linear("output.dense"), *hf.layer_norm("output.LayerNorm"),
)
_EMBEDDINGS = (
    *hf.embedding("electra.embeddings.word_embeddings"),
    *hf.embedding("electra.embeddings.position_embeddings"),
    *hf.embedding("electra.embeddings.token_type_embeddings"),
    *hf.layer_norm("electra.embeddings.LayerNorm"),
)
_BUFFERS = r"electra\.embeddings\.(position_ids|token_type_ids)"


def _table(cfg, generator):
  """The discriminator's or the generator's name table (embeddings_project only when E != H)."""
  ours = "generator." if generator else ""
  hidden = cfg.generator_hidden_size if generator else cfg.hidden_size
  project = (hf.linear(ours + "electra.embeddings_project", "electra.embeddings_project")
             if cfg.embedding_size != hidden else ())
  if generator:
    tensors = (*_EMBEDDINGS, *project,
               *hf.linear("generator.generator_predictions.dense", "generator_predictions.dense"),
               *hf.layer_norm("generator.generator_predictions.LayerNorm",
                              "generator_predictions.LayerNorm"),
               hf.Tensor("generator.generator_lm_head.bias", "generator_lm_head.bias"))
    heads, ignored = ("generator_predictions.", "generator_lm_head."), (
        r"generator_lm_head\.weight", _BUFFERS)  # the tied decoder
  else:
    tensors = (*_EMBEDDINGS, *project, *hf.linear("discriminator_predictions.dense"),
               *hf.linear("discriminator_predictions.dense_prediction"))
    heads, ignored = ("discriminator_predictions.",), (_BUFFERS,)
  return hf.NameTable(tensors=tensors, layers="electra.encoder.layer", layer_tensors=_LAYER,
                      base_prefix="electra.", heads=heads, ignored=ignored,
                      our_layers=ours + "electra.encoder.layer")


ARCHITECTURE_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "max_position_embeddings",
                     "type_vocab_size", "layer_norm_eps")
GENERATOR_KEYS = dict(generator_hidden_size="hidden_size",
                      generator_num_hidden_layers="num_hidden_layers",
                      generator_num_attention_heads="num_attention_heads",
                      generator_intermediate_size="intermediate_size")
SHARED_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")
_FIXED = dict(hidden_act="gelu", position_embedding_type="absolute", is_decoder=False,
              add_cross_attention=False, tie_word_embeddings=True)

model_section = config_lib.electra_model


def shapes(cfg, generator=False):
  """{HF name: shape} the discriminator's (or generator's) config.json implies
  for the tensors carrying its sizes."""
  hidden, inner = ((cfg.generator_hidden_size, cfg.generator_intermediate_size) if generator
                   else (cfg.hidden_size, cfg.intermediate_size))
  project = ({"electra.embeddings_project.weight": (hidden, cfg.embedding_size)}
             if cfg.embedding_size != hidden else {})
  return {**hf.embedding_shapes("electra.", cfg, cfg.embedding_size), **project,
          **hf.layer_shapes("electra.encoder.layer.0.", hidden, inner)}


def model_config(hf_config, path):
  """The discriminator's keys from `path`, the generator's from path/generator when there."""
  taken = hf.take_config(hf_config, path, ARCHITECTURE_KEYS, _FIXED, "ELECTRA")
  generator_dir = os.path.join(path, GENERATOR_DIR)
  if os.path.exists(os.path.join(generator_dir, "config.json")):
    generator = hf.take_config(hf.read_config(generator_dir), generator_dir,
                               ARCHITECTURE_KEYS, _FIXED, "ELECTRA")
    for key in ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size"):
      if generator[key] != taken[key]:
        raise UserError(f"{generator_dir} has {key}={generator[key]} but the discriminator "
                        f"{taken[key]}; lm_jax's ELECTRA shares the embeddings, so they must agree.")
    taken.update({ours: generator[theirs] for ours, theirs in GENERATOR_KEYS.items()})
  return taken


def _discriminator_config(model_cfg, tokenizer, dtype):
  return dict(architectures=["ElectraForPreTraining"], model_type=MODEL_TYPE, dtype=dtype,
              **{k: model_cfg[k] for k in ARCHITECTURE_KEYS + SHARED_KEYS}, **_FIXED,
              pad_token_id=tokenizer.pad_id)


def _generator_config(model_cfg, tokenizer, dtype):
  config = _discriminator_config(model_cfg, tokenizer, dtype)
  config.update({theirs: model_cfg[ours] for ours, theirs in GENERATOR_KEYS.items()},
                architectures=["ElectraForMaskedLM"])
  return config


def parts(model_cfg):
  return [hf.Part("", _table(model_cfg, generator=False), model_cfg.num_hidden_layers,
                  _discriminator_config, shapes(model_cfg)),
          hf.Part(GENERATOR_DIR, _table(model_cfg, generator=True),
                  model_cfg.generator_num_hidden_layers, _generator_config,
                  shapes(model_cfg, generator=True))]
