"""GPT-2 <-> HF `GPT2LMHeadModel`: the name table, config mapping and tokenizer.

HF's GPT-2 uses Conv1D, whose weight is [in, out] like our Linear kernel:
no tensor is transposed. The LM head is tied to `transformer.wte`, so
`save_pretrained` writes no `lm_head.weight`, and neither do we.

The tokenizer's [SEP] is GPT-2's <|endoftext|>: it ends every document and
begins the next (data/causal.py), so it is exported as both bos and eos.
An lm_jax (sentencepiece) tokenizer is exported to put it before each text,
as lm_jax does when it scores or continues a prompt; an HF tokenizer (a
run continued from GPT-2 itself) is written back as it came, the same ids
and special tokens. A pad that is the separator (GPT-2 has no pad token)
is not written as config.json's pad_token_id.
"""
import json
import os

from tokenizers import Tokenizer, processors

from lm_jax import config as config_lib
from lm_jax.data import hf_tokenizer
from lm_jax.errors import UserError
from lm_jax.interop import hf

FAMILY = "gpt2"
MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"


def conv1d(name):
  """An HF Conv1D: weight [in, out], as our kernel."""
  return (hf.Tensor(f"{name}.kernel", f"{name}.weight"), hf.Tensor(f"{name}.bias", f"{name}.bias"))


TABLE = hf.NameTable(
    tensors=(
        *hf.embedding("transformer.wte"),
        *hf.embedding("transformer.wpe"),
        *hf.layer_norm("transformer.ln_f"),
    ),
    layers="transformer.h",
    layer_tensors=(
        *hf.layer_norm("ln_1"),
        *conv1d("attn.c_attn"),
        *conv1d("attn.c_proj"),
        *hf.layer_norm("ln_2"),
        *conv1d("mlp.c_fc"),
        *conv1d("mlp.c_proj"),
    ),
    base_prefix="transformer.",
    ignored=(r"lm_head\.weight",                              # the tied copy of wte
             r"transformer\.h\.\d+\.attn\.(bias|masked_bias)"),  # causal-mask buffers of older files
)

# GPT2Config keys that fix the parameters' shapes and the computation.
ARCHITECTURE_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
                     "layer_norm_epsilon")
SHARED_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range")

# HF GPT2Config options our model does not implement, with the value it has.
_FIXED = dict(activation_function="gelu_new", scale_attn_weights=True,
              scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
              add_cross_attention=False, tie_word_embeddings=True)

model_section = config_lib.gpt2_model


def shapes(cfg):
  """{HF name: shape} config.json implies for the tensors carrying its sizes."""
  inner = 4 * cfg.n_embd if cfg.n_inner in (-1, None) else cfg.n_inner
  return {"transformer.wte.weight": (cfg.vocab_size, cfg.n_embd),
          "transformer.wpe.weight": (cfg.n_positions, cfg.n_embd),
          "transformer.h.0.attn.c_attn.weight": (cfg.n_embd, 3 * cfg.n_embd),
          "transformer.h.0.mlp.c_fc.weight": (cfg.n_embd, inner)}


def model_config(hf_config, path):
  """The architecture keys of our model section (a dict), from an HF config dict."""
  for key, ours in _FIXED.items():
    theirs = hf_config.get(key, ours)
    if theirs != ours:
      raise UserError(f"{path}/config.json has {key}={theirs!r}, but lm_jax's GPT-2 implements "
                      f"only {key}={ours!r}.")
  absent = [k for k in ARCHITECTURE_KEYS if k not in hf_config and k != "n_inner"]
  if absent:
    raise UserError(f"{path}/config.json lacks {absent[0]}; it is not a complete GPT2Config.")
  model = {k: hf_config.get(k) for k in ARCHITECTURE_KEYS}
  if model["n_inner"] is None:
    model["n_inner"] = -1
  return model


def hf_config(model_cfg, tokenizer, dtype):
  """HF's config.json for our model section."""
  model = {k: model_cfg[k] for k in ARCHITECTURE_KEYS + SHARED_KEYS}
  if model["n_inner"] == -1:
    model["n_inner"] = None
  pad = {} if tokenizer.pad_id == tokenizer.sep_id else dict(pad_token_id=tokenizer.pad_id)
  return dict(architectures=[ARCHITECTURE], model_type=MODEL_TYPE, dtype=dtype, **model, **_FIXED,
              bos_token_id=tokenizer.sep_id, eos_token_id=tokenizer.sep_id, **pad)


def save_tokenizer(tokenizer, out_dir, model_cfg):
  """The tokenizer files: an HF tokenizer's as they are; lm_jax's with [SEP]
  before each text and named bos/eos."""
  hf_tokenizer.save(tokenizer, out_dir, model_cfg.n_positions)
  if isinstance(tokenizer, hf_tokenizer.HFTokenizer):
    return
  path = os.path.join(out_dir, hf_tokenizer.TOKENIZER_FILE)
  backend = Tokenizer.from_file(path)
  sep = (tokenizer.id_to_token(tokenizer.sep_id), tokenizer.sep_id)
  backend.post_processor = processors.TemplateProcessing(
      single=f"{sep[0]} $A", pair=f"{sep[0]} $A {sep[0]} $B", special_tokens=[sep])
  backend.save(path)
  for name in (hf_tokenizer.CONFIG_FILE, hf_tokenizer.SPECIAL_TOKENS_FILE):
    with open(os.path.join(out_dir, name), encoding="utf-8") as f:
      settings = json.load(f)
    settings.update(bos_token=settings["sep_token"], eos_token=settings["sep_token"])
    if "model_input_names" in settings:
      settings["model_input_names"] = ["input_ids", "attention_mask"]
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
      json.dump(settings, f, indent=2, ensure_ascii=False)
