r"""Fine-tune an encoder on a GLUE task from tensorflow-datasets (glue/<task>).

  python -m lm_jax.main --config=configs/finetune_glue.py:sst2 --workdir=runs/sst2 \
      --config.init.from_hf=/path/to/bert-base-uncased      # or an lm_jax export
  python -m lm_jax.main --config=configs/finetune_glue.py:cola --workdir=runs/cola \
      --config.init.from_workdir=runs/bert_base --config.train.seeds=5

The encoder (architecture, weights and tokenizer) comes from init.from_hf
(an HF BERT / RoBERTa / ELECTRA directory) or init.from_workdir (an lm_jax
pre-training run); the head is new. Hyper-parameters follow BERT's paper
(batch 32, lr 2e-5, 3 epochs, 10% warm-up). The metrics of each task (CoLA:
Matthews correlation; MRPC/QQP: F1 and accuracy; STS-B: Pearson/Spearman;
others: accuracy) are all in metrics.jsonl as eval_*. GLUE numbers vary
with the seed, so report the median of train.seeds=5 (WORKDIR/seeds.json).
The dataset must be prepared beforehand (`tfds build glue/sst2`, or a
data_dir with its ArrayRecord files: data.tfds_data_dir).
"""
from lm_jax.config import bert_model, finetune_config

# task: (text columns, labels (tfds ClassLabel order; one name = regression), train size, eval split)
TASKS = {
    "cola": ("sentence", ("unacceptable", "acceptable"), 8_551, "validation"),
    "sst2": ("sentence", ("negative", "positive"), 67_349, "validation"),
    "mrpc": ("sentence1,sentence2", ("not_equivalent", "equivalent"), 3_668, "validation"),
    "qqp": ("question1,question2", ("not_duplicate", "duplicate"), 363_846, "validation"),
    "stsb": ("sentence1,sentence2", ("similarity",), 5_749, "validation"),
    "mnli": ("premise,hypothesis", ("entailment", "neutral", "contradiction"), 392_702,
             "validation_matched"),
    "qnli": ("question,sentence", ("entailment", "not_entailment"), 104_743, "validation"),
    "rte": ("sentence1,sentence2", ("entailment", "not_entailment"), 2_490, "validation"),
}


def get_config(task="sst2"):
  task = task or "sst2"
  if task not in TASKS:
    raise ValueError(f"unknown GLUE task {task!r}; use one of {', '.join(sorted(TASKS))}")
  text_keys, labels, size, eval_split = TASKS[task]
  c = finetune_config(bert_model(), "sequence_classification", labels)
  c.data.update(tfds_name=f"glue/{task}", tfds_split="train", tfds_eval_split=eval_split,
                text_keys=text_keys, label_key="label", seq_len=128)
  steps = 3 * size // 32
  c.train.update(steps=steps, batch_size=32, learning_rate=2e-5, warmup_steps=steps // 10,
                 log_every=50, eval_every=max(steps // 3, 1), checkpoint_every=max(steps // 3, 1))
  return c
