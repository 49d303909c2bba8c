"""A run on disk: WORKDIR/config.json, WORKDIR/tokenizer/, WORKDIR/checkpoints/.

- `check_workdir` refuses a workdir that holds another model (or lost its
  tokenizer, or is resumed with other train.phases); `record_config` writes
  config.json once the run starts;
- `run_data` gives each phase of the run (config.phases) its examples;
- `load_or_train_tokenizer` gives the run its tokenizer (copied from its
  prepared corpus, or for fine-tuning from the init source, on the first
  start; read on every later one); `run_tokenizer` reads it;
- `restore_params` reads a run's config and the parameters of one of its
  checkpoints onto a mesh (export, inference, fine-tuning's encoder).
"""
import json
from typing import Any, NamedTuple

import jax
import ml_collections
from jax.experimental import multihost_utils

from lm_jax import checkpoint, config as config_lib, families, parallel, paths, state
from lm_jax.data import prepare, prepared, tokenizer as tokenizer_lib
from lm_jax.errors import UserError


def read_config(workdir):
  path = paths.join(workdir, "config.json")
  if not paths.exists(path):
    raise UserError(f"{workdir} is not an lm_jax run (no config.json); "
                    "give the --workdir of a training run.")
  return ml_collections.ConfigDict(_read_json(path))


# Train keys that shape the optimizer state a checkpoint holds (a resume must keep them).
OPTIMIZER_STATE_KEYS = ("optimizer", "adafactor_momentum", "adafactor_min_dim_size_to_factor")


def check_workdir(config, workdir):
  """Refuses a workdir that holds another model, or checkpoints without the
  tokenizer they were trained with. Writes nothing."""
  path = paths.join(workdir, "config.json")
  if paths.exists(path):
    recorded = _read_json(path)
    old = recorded.get("model", {})
    if has_checkpoints(workdir):  # the optimizer state's structure is in the checkpoints
      for key in OPTIMIZER_STATE_KEYS:
        was, now = recorded.get("train", {}).get(key), config.train.get(key)
        if key in recorded.get("train", {}) and was != now:
          raise UserError(f"{workdir}'s checkpoints hold the optimizer state of train.{key}="
                          f"{was!r}, not {now!r}; resume with {was!r}, or start a new --workdir.")
      was = config_lib.phases_spec(recorded.get("train", {}))
      now = config_lib.phases_spec(config.train)
      if was != now:  # the steps' batches and the schedule's shape would change under them
        raise UserError(f"{workdir}'s checkpoints were trained with train.phases={was!r}, not "
                        f"{now!r}; resume with {was!r}, or start a new --workdir.")
    runtime = families.family(config.model).runtime_keys
    new = {k: v for k, v in config.model.to_dict().items() if k not in runtime}
    diff = sorted((k for k in set(old) | set(new) if k not in runtime and old.get(k) != new.get(k)),
                  key=lambda k: (k != "family", k))  # another family is the news, not its keys
    if diff:
      k = diff[0]
      raise UserError(f"{workdir} holds a run of a different model (model.{k} was "
                      f"{old.get(k)!r}, now {new.get(k)!r}); use a new --workdir or the old config.")
    if has_checkpoints(workdir):
      _check_same_batches(recorded, config, workdir)
  if has_checkpoints(workdir) and not _tokenizer_exists(config, paths.join(workdir, "tokenizer")):
    raise UserError(f"{workdir} has checkpoints but no tokenizer/ (the checkpoints' embeddings "
                    "belong to it); put the run's tokenizer/ back, or start a new --workdir.")


def _check_same_batches(recorded, config, workdir):
  """Refuses a resume whose batches would have another shape than the checkpoints'
  (data.seq_len, train.batch_size): batch k would hold other examples, and the
  resumed run would not be the run it continues (train.phases changes them within one)."""
  def shapes(c):
    return [(p.seq_len, p.batch_size) for p in config_lib.phases(c)]
  was, now = shapes(ml_collections.ConfigDict(recorded)), shapes(config)
  if was != now:
    p = next(i for i, (a, b) in enumerate(zip(was, now)) if a != b)
    (seq_was, batch_was), (seq_now, batch_now) = was[p], now[p]
    key, old, new = (("data.seq_len", seq_was, seq_now) if seq_was != seq_now
                     else ("train.batch_size", batch_was, batch_now))
    raise UserError(f"{workdir}'s checkpoints were trained with {key}={old}, not {new}: batch k "
                    f"would hold other examples; resume with {key}={old}, or start a new "
                    "--workdir (train.phases changes it within one run).")


def record_config(config, workdir):
  """Writes WORKDIR/config.json (process 0), once the run has really started: a
  failed invocation leaves the record of what the checkpoints were trained with."""
  if jax.process_index() == 0:
    paths.makedirs(workdir)
    paths.write_text(paths.join(workdir, "config.json"), config_lib.to_json(config))


def has_checkpoints(workdir):
  """Whether WORKDIR/checkpoints/ holds a step (complete or not)."""
  directory = checkpoint.directory(workdir)
  return any(n.isdigit() for n in paths.listdir(directory))


def _tokenizer_exists(config, directory):
  vocab = families.family(config.model).vocab  # the family's own, else sentencepiece
  return vocab.exists(directory) if vocab else tokenizer_lib.exists(directory)


def _read_json(path):
  try:
    return json.loads(paths.read_text(path))
  except ValueError:
    raise UserError(f"{path} is not valid JSON (truncated?); restore it from a backup, or copy "
                    "the config of the run that wrote the checkpoints.") from None


def load_or_train_tokenizer(config, workdir, corpus=None):
  """The workdir's tokenizer (ELMo: its vocabulary), read on every start. On the first
  it is copied from the prepared `corpus` (pre-training; a new tokenizer is trained
  when the corpus is prepared), or from data.tokenizer, init.from_hf or
  init.from_workdir's (fine-tuning). A corpus tokenized with another tokenizer
  than the run's is refused."""
  own = paths.join(workdir, "tokenizer")
  vocab = families.family(config.model).vocab  # the family's own, else sentencepiece
  source = prepare.tokenizer_source(config, own, vocab is not None)
  if source != own and jax.process_index() == 0:
    if corpus is not None:
      paths.copytree(corpus.tokenizer_dir, own)
    elif source:
      tokenizer_lib.copy(source, own)
    else:
      raise UserError("The run has no tokenizer; set data.tokenizer, init.from_hf or "
                      "init.from_workdir.")
  # Every process, unconditionally: another may have seen it missing before process 0 wrote it.
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("tokenizer")
  tok = vocab.load(config, own) if vocab else tokenizer_lib.load(own)
  if corpus is not None:  # cut with the run's tokenizer, and with the one the config names
    words = vocab is not None
    prepared.check_fits(corpus, prepared.files_sha(tok.files()), words, f"the run's ({own})")
    if source and source != own:
      named = prepare.tokenizer_files(source, words, config)
      prepared.check_fits(corpus, prepared.files_sha(named), words, source)
  padded = config.init.from_hf and tok.vocab_size < config.model.vocab_size  # HF may pad embeddings
  if tok.vocab_size != config.model.vocab_size and not padded:
    raise UserError(f"The tokenizer has {tok.vocab_size} pieces but model.vocab_size="
                    f"{config.model.vocab_size}; set --config.model.vocab_size={tok.vocab_size}.")
  if "pad_token_id" in config.model and config.model.pad_token_id != tok.pad_id:  # RoBERTa's positions depend on it
    raise UserError(f"The tokenizer's pad id is {tok.pad_id} but model.pad_token_id="
                    f"{config.model.pad_token_id}; set --config.model.pad_token_id={tok.pad_id}.")
  return tok


class PhaseData(NamedTuple):
  """One phase of a run (config.Phase) and its examples."""
  phase: config_lib.Phase
  train: Any          # the family's Examples of the phase's seq_len
  eval: Any = None    # held-out examples, or None


def corpus_dir(config, workdir):
  """The prepared corpus a pre-training run reads: data.prepared, else WORKDIR/data/."""
  return config.data.prepared or paths.join(workdir, "data")


def run_data(config, workdir):
  """[PhaseData] of the run, one per phase (config.phases; one without train.phases),
  and its tokenizer set up: pre-training reads a prepared corpus (data.prepared, or
  WORKDIR/data/, prepared here on the first start; a phase's missing material is made
  from the corpus's documents); fine-tuning's labelled records are small enough to read."""
  family = families.get(config.model)
  phases = config_lib.phases(config)
  if family.labelled:  # fine-tuning: labelled records (GLUE-, IMDB-sized) are read into memory
    tok = load_or_train_tokenizer(config, workdir)
    labels = config.model.labels
    train_records = family.read(config.data, "train")
    train_data = family.examples(train_records, tok, config.data, config.seed, labels)
    eval_records = family.read(config.data, "eval") if config.train.eval_every else []
    eval_data = (family.examples(eval_records, tok, config.data, config.seed + 1, labels)
                 if eval_records else None)
    return [PhaseData(phases[0], train_data, eval_data)]  # config.validate: one phase
  # Pre-training reads a prepared corpus: data.prepared, or WORKDIR/data/ made here once.
  examples, words = family.examples, family.examples.WORDS
  if not config.data.prepared and jax.process_index() == 0:
    own_tokenizer = paths.join(workdir, "tokenizer")
    for phase in phases:  # a no-op once prepared; a later seq_len reuses the documents
      prepare.prepare(phase.config, corpus_dir(config, workdir), examples, workers=0,
                      tokenizer=prepare.tokenizer_source(config, own_tokenizer, words))
  if jax.process_count() > 1:  # the others wait for process 0's preparation
    multihost_utils.sync_global_devices("prepared corpus")
  corpus = prepared.open(corpus_dir(config, workdir))
  tok = load_or_train_tokenizer(config, workdir, corpus)  # refuses a misfit corpus first
  if config.data.prepared:
    if jax.process_index() == 0:
      _add_material(corpus, examples, phases)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("material of every phase")
  splits = [s for s in corpus.splits() if s == "train" or config.train.eval_every]
  material = {(p.number, s): corpus.material(examples.LAYOUT, p.seq_len, s)
              for p in phases for s in splits}
  prepared.pin(corpus, material.values(), workdir, has_checkpoints(workdir),
               jax.process_index() == 0)
  out = []
  for p in phases:
    eval_data = (examples(material[p.number, "eval"], tok, p.config.data, config.seed + 1)
                 if "eval" in splits else None)
    out.append(PhaseData(p, examples(material[p.number, "train"], tok, p.config.data,
                                     config.seed), eval_data))
  return out


def _add_material(corpus, examples, phases):
  """Makes in the prepared `corpus` (data.prepared) the (examples.LAYOUT, seq_len) material
  a phase lacks, from its documents alone (nothing is read or tokenized again); a corpus
  that cannot be written is refused with the command that adds the material."""
  missing = {p.seq_len: p for p in phases
             if corpus.material_manifest(examples.LAYOUT, p.seq_len) is None}
  for seq_len, phase in missing.items():
    # prepare() checks the config names the input the corpus was made from; a run's
    # config need not (data.prepared stands for it), so it is given the recorded one.
    as_prepared = phase.config.copy_and_resolve_references()
    as_prepared.data.update(files="", eval_files="", tfds_name="")
    as_prepared.data.update({k: v for k, v in corpus.manifest["source"].items()
                             if k in as_prepared.data})
    try:
      prepare.prepare(as_prepared, corpus.path, examples, workers=0)
    except OSError as e:  # read-only (or unreachable): the owner of the corpus adds them
      which = (f" (phase {phase.number} of train.phases)"
               if config_lib.phases_spec(phase.config.train) else "")
      raise UserError(
          f"{corpus.path} holds no {examples.LAYOUT} examples for seq_len {seq_len}{which} and "
          f"adding them failed ({e.strerror or e}); add them with python -m lm_jax.prepare "
          f"--config=<the corpus's config> --out={corpus.path} --config.data.seq_len={seq_len}, "
          "which reuses its documents.") from None


def run_tokenizer(config, workdir):
  """A run's tokenizer, or its family's own vocabulary (ELMo's vocab.txt), for
  export and inference (a gs:// run's is read from a local copy)."""
  directory = paths.join(workdir, "tokenizer")
  if not _tokenizer_exists(config, directory):
    raise UserError(f"{workdir} has no tokenizer/ (its checkpoints' embeddings belong to it); "
                    "put the run's tokenizer/ back from a backup.")
  vocab = families.family(config.model).vocab
  return vocab.load(config, directory) if vocab else tokenizer_lib.load(directory)


def single_device_mesh(config):
  """A 1-device mesh: inference and export hold the whole model on one device."""
  mesh_cfg = ml_collections.ConfigDict(dict(config.mesh))
  mesh_cfg.update(data=1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1)
  return parallel.make_mesh(mesh_cfg, jax.local_devices()[:1]), parallel.rules(mesh_cfg)


def restore_params(workdir, step=None, mesh=None, rule_table=None):
  """(config, ModelState, params, step) of a run's checkpoint (latest by default),
  restored onto `mesh` with `rule_table` (default: one device)."""
  config = read_config(workdir)
  if mesh is None:
    mesh, rule_table = single_device_mesh(config)
  ms = state.ModelState(config, mesh, rule_table)
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  steps = ckpt.steps()
  if not steps:
    raise UserError(f"{workdir} has no complete checkpoint yet; train longer or wait for the first save.")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise UserError(f"{workdir} has no checkpoint at step {step}; available steps: {steps}.")
  params, _ = ckpt.restore(step, ms.abstract_params)
  ckpt.close()
  return config, ms, params, step
