"""`lm_jax.load(DIR)`: a trained model and its tokenizer, for inference.

DIR is a training workdir or a HuggingFace model directory (lm_jax.export's
output, or a model saved by transformers' save_pretrained). What it returns
depends on the family record's `inference` kind:

    masked_lm   encoder.MaskedLM     BERT, RoBERTa, ALBERT, ELECTRA pre-training runs
    classifier  classifier.Classifier  fine-tuned runs and HF classifiers
    causal_lm   causal.CausalLM      GPT-2: logits and generation
    elmo        elmo.Elmo            ELMo: contextual word vectors

All of them take a text, a list of texts or of token-id lists, and batch any
number of inputs into a few compiled shapes (batching.py). `fresh` builds
one with initialised weights (benchmarks, tests).
"""
from flax import nnx

from lm_jax import config as config_lib, families, interop, paths, state, workdir as workdir_lib
from lm_jax.data import tokenizer as tokenizer_lib
from lm_jax.inference import causal, classifier, elmo, encoder

KINDS = {"masked_lm": encoder.MaskedLM, "classifier": classifier.Classifier,
         "causal_lm": causal.CausalLM, "elmo": elmo.Elmo}


def inference_class(model_cfg):
  """What `load` returns for the model a `model` config section describes."""
  return KINDS[families.get(model_cfg).inference]


def load(path, step=None):
  """Loads an lm_jax run directory (latest checkpoint unless `step` is given)
  or an HF model directory."""
  if interop.is_hf_dir(path):
    return load_hf(path)
  config, ms, params, step = workdir_lib.restore_params(path, step)
  tok = workdir_lib.run_tokenizer(config, path)
  return inference_class(config.model)(config, ms, params, tok, step)


def load_hf(path):
  """An HF model directory: weights, config.json and tokenizer files (gs:// is read
  from a local copy: safetensors and HF tokenizers read local files)."""
  path = paths.local_copy(path)
  config = config_lib.base_config()
  config.model = interop.model_config(path)
  tok = tokenizer_lib.load(path)
  mesh, rule_table = workdir_lib.single_device_mesh(config)
  ms = state.ModelState(config, mesh, rule_table)
  # The abstract template: every weight comes from the checkpoint, none is initialised.
  params = interop.load_params(path, config.model, ms.abstract_params)
  return inference_class(config.model)(config, ms, params, tok)


def fresh(config, tokenizer, seed=0):
  """The inference object of `config`'s model with freshly initialised weights
  (benchmarks and tests: the speed and the shapes of a model, without training)."""
  model = families.build_model(config.model, rngs=nnx.Rngs(params=seed))
  mesh, rule_table = workdir_lib.single_device_mesh(config)
  return inference_class(config.model)(config, state.ModelState(config, mesh, rule_table),
                                       nnx.to_pure_dict(nnx.state(model)), tokenizer)
