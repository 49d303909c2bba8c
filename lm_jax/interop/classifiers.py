"""Fine-tuned classifiers <-> HF `{Bert,Roberta,Electra}For{Sequence,Token}Classification`.

The encoder's tensors are those of the family's own table (interop/bert.py,
roberta.py, electra.py) under its base prefix; the head is `classifier.*`
(models/classifiers.py). config.json is the family's, plus the labels
(id2label / label2id, hence num_labels) and, for sequence tasks, problem_type.
Importing a pre-training checkpoint keeps the head as initialised and
ignores the pre-training heads.
"""
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


def task_keys(hf_config):
  """{task, labels} of an HF classifier's config.json, or {} for other models."""
  for task, name in _TASK_NAMES.items():
    if any(a.endswith("For" + name) for a in hf_config.get("architectures") or ()):
      id2label = hf_config.get("id2label") or {str(i): f"LABEL_{i}"
                                               for i in range(hf_config.get("num_labels", 2))}
      return dict(task=task, labels=tuple(id2label[k] for k in sorted(id2label, key=int)))
  return {}
