"""GPT-2: a Transformer decoder, causal LM on packed documents."""
from lm_jax.data import causal
from lm_jax.families import base
from lm_jax.models import gpt
from lm_jax.objectives import losses

FAMILY = base.Family(
    name="gpt2", model=gpt.GPT2LMHeadModel, loss=losses.causal_lm,
    examples=causal.CausalExamples, config_file="gpt2", inference="causal_lm",
    check=base.check_transformer, runtime_keys=("dtype", "attention", "remat", "resid_pdrop",
                                                "embd_pdrop", "attn_pdrop"),
    progress_metrics=("loss", "perplexity", "accuracy"),
    validate_overrides={"model.n_embd": 64, "model.n_positions": 64, "data.seq_len": 64})
