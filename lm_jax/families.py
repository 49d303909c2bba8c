"""Model families: the parts each `model.family` is made of, in one table.

Fine-tuning tasks (`model.task`) have entries of their own in TASKS: the
same parts, with the family's encoder under a task head.

A new family brings a model module (models/), a loss (objectives/), an
Examples class (data/), a config file (configs/) and an HF name table
(interop/), and is added here with one line.
"""
import dataclasses
from typing import Any

from lm_jax.data import causal
from lm_jax.data import encoder_examples
from lm_jax.data import elmo_data, elmo_vocab
from lm_jax.data import labelled
from lm_jax.errors import UserError
from lm_jax.models import bert, gpt
from lm_jax.models import albert, electra, roberta
from lm_jax.models import classifiers, elmo
from lm_jax.objectives import losses


@dataclasses.dataclass(frozen=True)
class Family:
  model: Any     # Flax NNX module class, built as model(model_cfg, rngs=...)
  loss: Any      # loss(model, batch, dropout_key or None) -> (scalar, dict of metrics)
  examples: Any  # pipeline.Examples subclass, built as examples(docs, tokenizer, data_cfg, seed)
  # The family's own vocabulary instead of a sentencepiece tokenizer: a module
  # with exists(dir), create(config, dir, train_docs) and load(config, dir).
  vocab: Any = None
  # A recurrent state carried from each train step to the next (stateful
  # LSTMs): initial_carry(config, batch_size) -> zero pytree [batch, ...], or
  # None; then loss(model, batch, key, carry) -> (scalar, (metrics, new carry)).
  initial_carry: Any = None


FAMILIES = {
    "bert": Family(bert.BertForPreTraining, losses.bert_pretraining, encoder_examples.BertExamples),
    "roberta": Family(roberta.RobertaForMaskedLM, losses.masked_lm,
                      encoder_examples.FullSentenceExamples),
    "albert": Family(albert.AlbertForPreTraining, losses.albert_pretraining,
                     encoder_examples.SentenceOrderExamples),
    "electra": Family(electra.ElectraForPreTraining, losses.electra_pretraining,
                      encoder_examples.ReplacedTokenExamples),
    "elmo": Family(elmo.ElmoBiLM, losses.elmo_bilm, elmo_data.ElmoExamples, vocab=elmo_vocab,
                   initial_carry=elmo.initial_carry),
    "gpt2": Family(gpt.GPT2LMHeadModel, losses.causal_lm, causal.CausalExamples),
}


# Fine-tuning: examples are built as examples(records, tokenizer, data_cfg, seed, labels).
TASKS = {
    classifiers.SEQUENCE: Family(classifiers.Classifier, losses.classification,
                                 labelled.SequenceExamples),
    classifiers.TOKEN: Family(classifiers.Classifier, losses.classification,
                              labelled.TokenExamples),
}


def get(model_cfg):
  """The parts of the model a `model` config section describes: a pre-training
  family, or a fine-tuning task (model.task) on one."""
  if model_cfg.get("task"):
    if model_cfg.task not in TASKS:
      raise UserError(f"model.task={model_cfg.task!r} is not one of {sorted(TASKS)}.")
    return TASKS[model_cfg.task]
  if model_cfg.family not in FAMILIES:
    raise UserError(f"model.family={model_cfg.family!r} is not one of {sorted(FAMILIES)}; "
                    "fix the config's model section.")
  return FAMILIES[model_cfg.family]


def build_model(model_cfg, *, rngs):
  """The model the `model` config section describes."""
  return get(model_cfg).model(model_cfg, rngs=rngs)


def make_examples(model_cfg, documents, tokenizer, data_cfg, seed):
  """Random-access training examples over `documents` (labelled records when fine-tuning)."""
  if model_cfg.get("task"):
    return get(model_cfg).examples(documents, tokenizer, data_cfg, seed, model_cfg.labels)
  return get(model_cfg).examples(documents, tokenizer, data_cfg, seed)
