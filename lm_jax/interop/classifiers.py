"""Fine-tuned classifiers <-> HF `{Bert,Roberta,Electra}For{Sequence,Token}Classification`.

The encoder's tensors are those of the family's own table (interop/bert.py,
roberta.py, electra.py) under its base prefix; the head is `classifier.*`
(models/classifiers.py). config.json is the family's, plus the labels
(id2label / label2id, hence num_labels) and, for sequence tasks, problem_type.
Importing a pre-training checkpoint keeps the head as initialised and
ignores the pre-training heads.
"""
from lm_jax.errors import UserError
from lm_jax.interop import bert, electra, hf, roberta
from lm_jax.models import classifiers

_FAMILIES = {"bert": (bert, "Bert"), "roberta": (roberta, "Roberta"), "electra": (electra, "Electra")}
_TASK_NAMES = {classifiers.SEQUENCE: "SequenceClassification",
               classifiers.TOKEN: "TokenClassification"}
_PRETRAINING_HEADS = (r"(cls|lm_head|discriminator_predictions|generator_predictions|"
                      r"generator_lm_head)\..*", r"\w+\.pooler\.dense\.(weight|bias)",
                      r".*\.(position_ids|token_type_ids)")


def _family_table(model_cfg):
  module = _FAMILIES[model_cfg.family][0]
  return module.parts(model_cfg)[0].table if hasattr(module, "parts") else module.TABLE


def table(model_cfg):
  """The name table of the classifier `model_cfg` describes."""
  family = _family_table(model_cfg)
  sequence = model_cfg.task == classifiers.SEQUENCE
  keep = lambda t: t.ours.startswith(family.base_prefix) and (sequence or ".pooler." not in t.ours)
  if sequence and model_cfg.family != "bert":  # RoBERTa's and ELECTRA's two-layer head
    head = (*hf.linear("classifier.dense"), *hf.linear("classifier.out_proj"))
  else:
    head = hf.linear("classifier")
  return hf.NameTable(tensors=(*filter(keep, family.tensors), *head), layers=family.layers,
                      layer_tensors=family.layer_tensors, base_prefix=family.base_prefix,
                      heads=("classifier.",), ignored=_PRETRAINING_HEADS,
                      our_layers=family.our_layers)


def architecture(model_cfg):
  return _FAMILIES[model_cfg.family][1] + "For" + _TASK_NAMES[model_cfg.task]


def hf_config(model_cfg, tokenizer, dtype):
  """The family's config.json with the classifier's architecture and labels."""
  module = _FAMILIES[model_cfg.family][0]
  make = module.parts(model_cfg)[0].hf_config if hasattr(module, "parts") else module.hf_config
  config = make(model_cfg, tokenizer, dtype)
  labels = list(model_cfg.labels)
  config.update(architectures=[architecture(model_cfg)],
                id2label={str(i): name for i, name in enumerate(labels)},
                label2id={name: i for i, name in enumerate(labels)})
  if model_cfg.task == classifiers.SEQUENCE:
    config["problem_type"] = "regression" if len(labels) == 1 else "single_label_classification"
  return config


def task_keys(hf_config, path, head_rows):
  """{task, labels} of an HF classifier's config.json, or {} for other models.

  `head_rows(names)` gives the rows of the first of these checkpoint tensors
  there is (None: none): the labels must be as many, so a config.json cannot
  make lm_jax build a head the weights do not have.
  """
  for task, name in _TASK_NAMES.items():
    if any(isinstance(a, str) and a.endswith("For" + name)
           for a in hf_config.get("architectures") or ()):
      id2label = hf_config.get("id2label")
      count = len(id2label) if isinstance(id2label, dict) else hf_config.get("num_labels", 2)
      rows = head_rows(("classifier.out_proj.weight", "classifier.weight"))
      if rows is None or count != rows:
        raise UserError(f"{path}/config.json names {count} labels but the checkpoint's "
                        f"classifier has {rows or 'no'} rows; use the config.json saved with "
                        "these weights.")
      if id2label is None:
        return dict(task=task, labels=tuple(f"LABEL_{i}" for i in range(count)))
      if not isinstance(id2label, dict) or sorted(id2label) != sorted(map(str, range(count))):
        raise UserError(f"{path}/config.json's id2label does not map 0 to {count - 1} to "
                        "labels; use the config.json saved with these weights.")
      return dict(task=task, labels=tuple(str(id2label[str(i)]) for i in range(count)))
  return {}
