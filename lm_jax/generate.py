r"""Continue prompts with a GPT run or HF GPT-2 directory (see lm_jax/inference/causal.py).

  python -m lm_jax.generate --workdir=runs/gpt-tiny --prompt="Emma was" \
      [--prompt=... --max_new_tokens=32 --temperature=0.8 --top_k=50 --top_p=0.95 --seed=0]

Prints each prompt followed by its continuation, one line each. The
default temperature 0 is greedy decoding.
"""
from absl import app, flags, logging

from lm_jax import cli, inference
from lm_jax.inference import causal
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "A GPT training run or HF GPT-2 directory.")
_PROMPT = flags.DEFINE_multi_string("prompt", None, "Text to continue (repeat for a batch).")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 32, "Tokens to generate per prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy; else sampling temperature.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sample within this probability mass (1 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of the sampling.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")


def load(path, step=None):
  """The CausalLM at `path`, refusing models of other families."""
  model = inference.load(path, step)
  if not isinstance(model, causal.CausalLM):
    raise UserError(f"{path} holds a model.family={model.config.model.family!r} model, which "
                    "does not generate text; give a GPT run (configs/gpt2.py).")
  return model


def main(argv):
  if len(argv) > 1:
    cli.fail(f"Unexpected arguments {argv[1:]}; pass options as --name=value.")
  for flag in (_WORKDIR, _PROMPT):
    if not flag.value:
      cli.fail(f"--{flag.name} is required: {flag.help[0].lower()}{flag.help[1:-1]}.")
  logging.set_verbosity(logging.WARNING)
  with cli.user_errors():
    model = load(_WORKDIR.value, _STEP.value)
    texts = model.generate(_PROMPT.value, max_new_tokens=_MAX_NEW.value,
                           temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                           top_p=_TOP_P.value, seed=_SEED.value)
  for prompt, text in zip(_PROMPT.value, texts):
    print(prompt + text, flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
