"""The config every run shares, and its validation.

configs/*.py start from `base_config()` and fill in the model and their
variants. `validate` turns an impossible value into one `UserError`
sentence naming the key and the fix.
"""
import json
import re
from typing import NamedTuple

import ml_collections
from ml_collections.config_dict import placeholder

from lm_jax.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("auto", "xla", "cudnn")
REMAT = ("none", "full", "dots", "dots_no_batch")
OPTIMIZERS = ("adamw", "lamb", "adafactor", "adagrad")
SCHEDULES = ("linear", "constant")

# The keys only one optimizer reads, and what each means unset (None): that
# optimizer's published default (Shazeer & Stern 2018 and optax for Adafactor; TF's
# and optax's Adagrad). Typed placeholders keep --config.train.KEY=VALUE checked and
# let validate tell a key set from one left alone, so it can refuse a key of an
# optimizer the run does not use. adam_b1/b2/eps (AdamW and LAMB) keep plain values
# instead: the config files tune them for their AdamW recipes (gpt2.py b2 0.95,
# roberta.py 0.98), a placeholder cannot be unset from the command line (`=None` does
# not parse), and refusing them would make --config.train.optimizer=adafactor
# impossible on those files; Adafactor and Adagrad just do not read them.
OPTIMIZER_DEFAULTS = {
    "adafactor": dict(adafactor_decay_rate=0.8, adafactor_clipping_threshold=1.0,
                      adafactor_min_dim_size_to_factor=128, adafactor_momentum=None),
    "adagrad": dict(adagrad_initial_accumulator_value=0.1, adagrad_eps=1e-7),
}

# Logical axis -> mesh axes. Parameters and activations are annotated with the
# names on the left (models/); this table alone decides how they are sharded.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("length", None),
    ("act_embed", None),  # activations' hidden dim (parameters' "embed" is fsdp-sharded)
    ("layers", None),
    ("lstm_hidden", "tensor"),  # ELMo's LSTM cells (parameters and state)
)


def base_config():
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()  # filled by each config file

  c.train = ml_collections.ConfigDict(dict(
      steps=1000,
      batch_size=256,          # global, over all devices and hosts
      learning_rate=1e-4,
      warmup_steps=100,
      schedule_steps=-1,       # length of the LR schedule; -1 = train.steps
      # Sequence-length phases of one run (BERT: 90% of the steps at 128, then 512):
      # "SEQ_LEN[xBATCH]:STEPS,..." e.g. "128:900000,512x32:100000"; empty = one phase of
      # data.seq_len and train.batch_size. Below, "Sequence-length phases", says the rules.
      phases="",
      grad_accum_steps=1,      # micro-batches per step (batch_size must divide)
      schedule="linear",       # after warm-up: linear (to 0 at schedule_steps) | constant
      optimizer="adamw",       # adamw | lamb | adafactor | adagrad (README, "Optimizers")
      weight_decay=0.01,       # decoupled (lr * wd * p a step), never on biases and norms
      adam_b1=0.9,             # adamw and lamb
      adam_b2=0.999,
      adam_eps=1e-6,
      max_grad_norm=1.0,       # clip the global gradient norm (every optimizer)
      # One optimizer's own keys; unset = its default (OPTIMIZER_DEFAULTS above).
      adafactor_decay_rate=placeholder(float),    # second moment: beta2_t = 1 - t^-rate (0.8)
      adafactor_clipping_threshold=placeholder(float),  # update clipping to RMS <= d (1.0)
      adafactor_min_dim_size_to_factor=placeholder(int),  # factor a matrix whose dims reach it (128)
      adafactor_momentum=placeholder(float),      # a first moment with this beta1 (none)
      adagrad_initial_accumulator_value=placeholder(float),  # the squares' sum at step 0 (0.1)
      adagrad_eps=placeholder(float),             # added to the sum under the root (1e-7)
      log_every=50,
      eval_every=500,          # 0 = no evaluation during training
      eval_steps=10,           # batches of held-out text per evaluation
      checkpoint_every=500,
      keep_checkpoints=3,
      compile_only=False,      # compile the step, print memory, do not train
  ))

  c.data = ml_collections.ConfigDict(dict(
      files="",                # glob of .txt/.jsonl(.gz); empty = embedded corpus
      eval_files="",           # held-out text for evaluation (with data.files)
      tfds_name="",            # a tensorflow-datasets text dataset, e.g. wikipedia/20230601.en
      tfds_split="train",
      tfds_eval_split="",
      tfds_text_key="text",
      tfds_data_dir="",
      max_documents=-1,        # read at most this many documents (-1 = all)
      seq_len=128,
      tokenizer="",            # tokenizer dir to reuse (spm.model, or HF tokenizer files); empty = train one
      mask_probability=0.15,
      max_predictions_per_seq=20,
      whole_word_masking=False,
      nsp_probability=0.5,     # NSP: chance B is another document's; ALBERT's SOP: of a swap
      worker_threads=2,        # Grain threads building batches ahead of the step
      # A prepared corpus (python -m lm_jax.prepare --out=DIR, local or gs://); empty = the run
      # prepares the input named above into WORKDIR/data/ on its first start and reuses it.
      prepared="",
      shard_mb=64.0,           # prepare: input MB per shard (a shard = one worker's unit of work)
      tokenizer_sample_mb=64.0,  # prepare: MB of training text a new tokenizer / vocabulary learns from
      stream_chunk=64,         # stateful ELMo: consecutive windows an epoch's shuffle keeps together
  ))

  c.mesh = ml_collections.ConfigDict(dict(
      data=-1, fsdp=1, tensor=1,  # per-slice mesh; -1 = all remaining devices
      dcn_data=1, dcn_fsdp=1,     # across slices (data centre network)
      rules=DEFAULT_RULES,
  ))

  c.init = ml_collections.ConfigDict(dict(
      from_hf="",        # an HF model directory: its architecture and weights
      from_workdir="",   # an lm_jax pre-training workdir: its encoder (fine-tuning)
  ))
  return c


LONG_DOCUMENT = ("truncate", "head_tail", "sliding_window")


def finetune_config(model, task, labels):
  """base_config() for fine-tuning `model` (a model section; replaced by the
  encoder of init.from_workdir / init.from_hf when given) on a labelled task.

  `labels` names the classes (or tags); a single name means regression.
  """
  c = base_config()
  c.model = model
  c.model.update(task=task, labels=tuple(labels))
  c.data.update(
      text_keys="sentence",      # the text column; two comma-separated for pairs
      label_key="label",
      long_document="truncate",  # truncate | head_tail | sliding_window (data/labelled.py)
      window_stride=-1,          # sliding_window: pieces between window starts; -1 = half a window
  )
  c.train.update(steps=1000, batch_size=32, learning_rate=2e-5, warmup_steps=100,
                 weight_decay=0.01, log_every=50, eval_every=500, checkpoint_every=500,
                 keep_checkpoints=1,
                 seeds=1)            # runs with seeds seed, seed+1, ...; reports the medians
  c.data.tokenizer = ""  # from the init source; set it to fine-tune from scratch
  return c


# How a Transformer runs, not what its parameters are; shared by its families.
TRANSFORMER_RUNTIME = dict(
    dtype="float32",          # compute dtype; params stay float32
    attention="auto",         # auto | xla | cudnn (flash attention, GPU)
    scan_layers=False,        # stack the layers and run them with lax.scan
    remat="none",             # none | full | dots | dots_no_batch
)


def bert_model(**overrides):
  """The `model` section for a BERT encoder (HF BertConfig names)."""
  m = dict(
      family="bert",
      vocab_size=30522,
      hidden_size=768,
      num_hidden_layers=12,
      num_attention_heads=12,
      intermediate_size=3072,
      max_position_embeddings=512,
      type_vocab_size=2,
      hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1,
      layer_norm_eps=1e-12,
      initializer_range=0.02,
      **TRANSFORMER_RUNTIME,
  )
  m.update(overrides)
  return ml_collections.ConfigDict(m)


def gpt2_model(**overrides):
  """The `model` section for a GPT-2 decoder (HF GPT2Config names)."""
  m = dict(
      family="gpt2",
      vocab_size=50257,
      n_positions=1024,
      n_embd=768,
      n_layer=12,
      n_head=12,
      n_inner=-1,               # MLP width; -1 = 4 * n_embd (HF: None)
      resid_pdrop=0.1,
      embd_pdrop=0.1,
      attn_pdrop=0.1,
      layer_norm_epsilon=1e-5,
      initializer_range=0.02,
      **TRANSFORMER_RUNTIME,
  )
  m.update(overrides)
  return ml_collections.ConfigDict(m)


# Shared code reads a model's sizes under BertConfig's names; GPT2Config
# spells them as on the right (transformers' GPT2Config.attribute_map).
SIZE_ALIASES = dict(num_hidden_layers="n_layer", hidden_size="n_embd",
                    num_attention_heads="n_head", max_position_embeddings="n_positions")


def size(model_cfg, name):
  """The model section's `name` (a BertConfig size name), under either spelling."""
  return model_cfg[name] if name in model_cfg else model_cfg[SIZE_ALIASES[name]]


def roberta_model(**overrides):
  """The `model` section for RoBERTa (HF RobertaConfig names): BERT's encoder
  with one token type and position ids counted from pad_token_id + 1, so
  max_position_embeddings = longest input + pad_token_id + 1 (models/roberta.py).
  pad_token_id must be the tokenizer's ([PAD] = 0 in lm_jax's; 1 in HF RoBERTa's)."""
  return bert_model(**{**dict(family="roberta", vocab_size=50265, max_position_embeddings=514,
                              type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=0),
                       **overrides})


def albert_model(**overrides):
  """The `model` section for ALBERT (HF AlbertConfig names): embeddings of size
  embedding_size projected to hidden_size, one layer shared by all depths."""
  return bert_model(**{**dict(family="albert", vocab_size=30000, embedding_size=128,
                              hidden_act="gelu_new", hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1),
                       **overrides})


def electra_model(**overrides):
  """The `model` section for ELECTRA (HF ElectraConfig names): the discriminator's
  sizes, the generator's as generator_*, and the replaced-token loss weight."""
  return bert_model(**{**dict(family="electra", embedding_size=768, generator_hidden_size=256,
                              generator_num_hidden_layers=12, generator_num_attention_heads=4,
                              generator_intermediate_size=1024, discriminator_weight=50.0),
                       **overrides})


def max_sequence_length(model_cfg):
  """The longest input the position table takes (RoBERTa's starts at pad_token_id + 1)."""
  offset = model_cfg.pad_token_id + 1 if model_cfg.get("family") == "roberta" else 0
  return model_cfg.max_position_embeddings - offset


def elmo_model(**overrides):
  """The `model` section for ELMo (bilm-tf's options.json names, flattened)."""
  m = dict(
      family="elmo",
      vocab_size=793471,        # softmax classes (bilm-tf's n_tokens_vocab)
      max_characters_per_token=50,
      char_embedding_dim=16,
      filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
      activation="relu",        # relu | tanh (char CNN)
      n_highway=2,
      projection_dim=512,       # token embedding and LSTM output width (P)
      lstm_dim=4096,            # LSTM cells (D); projected to P when P < D
      n_layers=2,
      cell_clip=3.0,            # None = no clipping
      proj_clip=3.0,
      use_skip_connections=True,
      dropout=0.1,
      n_negative_samples=8192,  # sampled-softmax negatives per batch and direction
      dtype="float32",          # compute dtype; params stay float32
  )
  m.update(overrides)
  return ml_collections.ConfigDict(m)


def check(ok, message):
  if not ok:
    raise UserError(message)


def validate(c):
  """Raises UserError for the first impossible value among the keys every family
  shares; families.validate adds the family's (and a fine-tuning task's) own."""
  t = c.train
  for key in ("steps", "batch_size", "log_every", "grad_accum_steps", "keep_checkpoints",
              "checkpoint_every", "eval_steps"):
    check(t[key] > 0, f"train.{key}={t[key]} must be positive; set --config.train.{key} to a number > 0.")
  for key in ("warmup_steps", "eval_every"):
    check(t[key] >= 0, f"train.{key}={t[key]} must be >= 0.")
  check(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be positive.")
  check(t.schedule_steps == -1 or t.schedule_steps > 0,
         f"train.schedule_steps={t.schedule_steps} must be -1 (= train.steps) or positive.")
  check(t.batch_size % t.grad_accum_steps == 0,
         f"train.batch_size={t.batch_size} is not divisible by train.grad_accum_steps="
         f"{t.grad_accum_steps}; make the batch a multiple of the accumulation steps.")
  _validate_optimizer(t)
  _validate_phases(c)
  sizes = [c.mesh[k] for k in ("data", "fsdp", "tensor")]
  check(sizes.count(-1) <= 1 and all(s == -1 or s > 0 for s in sizes),
         f"mesh data/fsdp/tensor={sizes}: use positive sizes and at most one -1.")


def _validate_optimizer(t):
  check(t.optimizer in OPTIMIZERS, f"train.optimizer={t.optimizer!r} is not one of {OPTIMIZERS}.")
  check(t.schedule in SCHEDULES, f"train.schedule={t.schedule!r} is not one of {SCHEDULES}.")
  for name, keys in OPTIMIZER_DEFAULTS.items():
    for key in keys:
      check(name == t.optimizer or t[key] is None,
            f"train.{key} is an {name} key but train.optimizer={t.optimizer}; remove it or "
            f"set train.optimizer={name}.")
  check(t.max_grad_norm > 0, f"train.max_grad_norm={t.max_grad_norm} must be positive.")
  check(t.weight_decay >= 0, f"train.weight_decay={t.weight_decay} must be >= 0.")
  for key in ("adam_b1", "adam_b2"):
    check(0 <= t[key] < 1, f"train.{key}={t[key]} must be in [0, 1).")
  check(t.adam_eps > 0, f"train.adam_eps={t.adam_eps} must be positive.")
  s = lambda key: optimizer_setting(t, key)
  if t.optimizer == "adafactor":
    check(0 < s("adafactor_decay_rate") <= 1,
          f"train.adafactor_decay_rate={s('adafactor_decay_rate')} must be in (0, 1].")
    for key in ("adafactor_clipping_threshold", "adafactor_min_dim_size_to_factor"):
      check(s(key) > 0, f"train.{key}={s(key)} must be positive.")
    check(s("adafactor_momentum") is None or 0 <= s("adafactor_momentum") < 1,
          f"train.adafactor_momentum={s('adafactor_momentum')} must be in [0, 1).")
  if t.optimizer == "adagrad":
    for key in ("adagrad_initial_accumulator_value", "adagrad_eps"):
      check(s(key) >= 0, f"train.{key}={s(key)} must be >= 0.")


def optimizer_setting(train_cfg, key):
  """train.KEY of one optimizer (OPTIMIZER_DEFAULTS), or its default when unset."""
  if train_cfg[key] is not None:
    return train_cfg[key]
  return next(keys[key] for keys in OPTIMIZER_DEFAULTS.values() if key in keys)


def override(config, overrides):
  """Sets dotted keys ({"train.steps": 20}) in a config, as --config.KEY=VALUE
  would; returns it."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def schedule_steps(c):
  return c.train.steps if c.train.schedule_steps == -1 else c.train.schedule_steps


# ---------------------------------------------------------------------------
# Sequence-length phases (train.phases)
# ---------------------------------------------------------------------------
#
# train.phases="128:900000,512:100000" trains 900k steps at seq_len 128, then 100k at 512
# (BERT's 90/10 recipe); "512x32:100000" also sets that phase's global batch (NVIDIA's
# smaller batch at 512), else it is train.batch_size. The run stays one run: one
# learning-rate schedule over the phases' sum (= train.steps, or train.schedule_steps
# when set, with which a smaller train.steps stops early), the optimizer state carried
# across, checkpoints and metrics.jsonl (a `phase` field, 1, 2, ...) continuous. A phase
# reads the prepared corpus's material of its seq_len, made from the documents when
# missing (no re-tokenizing), and its batch j is a pure function of (seed, j): a resume
# on either side of a boundary rebuilds the same batches. Held-out evaluation runs at
# the phase's seq_len and batch. A phase keeps the masking rate: data.max_predictions_per_seq
# counts the predictions of a data.seq_len-long example, and a phase of seq_len L masks up
# to round(max_predictions_per_seq * L / data.seq_len) (BERT: 20 at 128, 80 at 512).


class Phase(NamedTuple):
  number: int        # 1, 2, ... (what metrics.jsonl's `phase` says)
  seq_len: int
  batch_size: int
  first_step: int    # it trains steps first_step + 1 ... last_step (steps count from 1)
  last_step: int
  config: ml_collections.ConfigDict  # the run's config with this phase's length and batch


PHASES_FORMAT = "SEQ_LEN[xBATCH]:STEPS, comma-separated, e.g. 128:900000,512x32:100000"


def phases(c):
  """The run's phases in order: train.phases, or one phase of data.seq_len and
  train.batch_size (the config itself) over the whole run."""
  spec = phases_spec(c.train)
  if not spec:
    return [Phase(1, c.data.seq_len, c.train.batch_size, 0,
                  max(c.train.steps, schedule_steps(c)), c)]
  out, first = [], 0
  for number, text in enumerate(spec.split(","), 1):
    match = re.fullmatch(r"(\d+)(?:x(\d+))?:(\d+)", text)
    check(match, f"train.phases={spec!r} has {text!r}, which is not {PHASES_FORMAT}.")
    seq_len, batch, steps = match.groups()
    seq_len, steps = int(seq_len), int(steps)
    batch = int(batch) if batch else c.train.batch_size
    check(seq_len > 0 and batch > 0 and steps > 0,
          f"train.phases: phase {number} ({text}) needs a positive seq_len, batch and steps.")
    config = c.copy_and_resolve_references()
    predictions = max(1, round(c.data.max_predictions_per_seq * seq_len / c.data.seq_len))
    config.data.update(seq_len=seq_len, max_predictions_per_seq=predictions)
    config.train.batch_size = batch
    out.append(Phase(number, seq_len, batch, first, first + steps, config))
    first += steps
  return out


def phases_spec(train):
  """A train section's phases without spaces ("" when unset): what a resume must keep."""
  return "".join(train.get("phases", "").split())


def _validate_phases(c):
  if not phases_spec(c.train):
    return
  check(not c.model.get("task"),
        "train.phases is for pre-training; a fine-tuning run (model.task) has one data.seq_len, "
        "so leave train.phases empty.")
  check(not c.data.get("stateful"),
        "train.phases would change the batch that data.stateful carries the LSTM state in; set "
        "data.stateful=False or leave train.phases empty.")
  run = phases(c)
  total, schedule = run[-1].last_step, schedule_steps(c)
  check(total == schedule,
        f"train.phases add up to {total} steps but the learning-rate schedule has {schedule} "
        f"(train.{'steps' if c.train.schedule_steps == -1 else 'schedule_steps'}); make them "
        "equal, or set train.phases='' for one phase.")
  check(c.train.steps <= total,
        f"train.steps={c.train.steps} runs past the {total} steps of train.phases; lower it or "
        "lengthen the last phase.")
  limit = _longest_input(c.model)
  for p in run:
    if limit:  # a Transformer (8: what check_transformer asks of data.seq_len)
      check(8 <= p.seq_len <= limit[0],
            f"train.phases: phase {p.number}'s seq_len {p.seq_len} is not in [8, {limit[0]}], "
            f"the lengths model.{limit[1]} allows; change the phase or raise model.{limit[1]}.")
    check(p.batch_size % c.train.grad_accum_steps == 0,
          f"train.phases: phase {p.number}'s batch {p.batch_size} is not divisible by "
          f"train.grad_accum_steps={c.train.grad_accum_steps}; make it a multiple of the "
          "accumulation steps.")


def _longest_input(model_cfg):
  """(longest input, the model key that sets it), or None without a position table (ELMo)."""
  if "max_position_embeddings" in model_cfg:
    return max_sequence_length(model_cfg), "max_position_embeddings"
  if "n_positions" in model_cfg:
    return model_cfg.n_positions, "n_positions"
  return None


def to_json(c):
  return json.dumps(c.to_dict(), indent=2, sort_keys=True, default=str)
