r"""BERT pre-training (MLM + NSP), variants tiny / demo / base / large / large_batch.

  python -m lm_jax.main --config=configs/bert_base.py:demo --workdir=runs/demo

demo (the README's first command, CPU): 2 layers, hidden 64, 4 heads, seq 32, batch
32, a 2000-piece vocabulary, no dropout, NSP off (nsp_probability 0: its gradient
slowed the MLM), 6000 steps at lr 2e-3 on the embedded Austen corpus. Measured on
2 CPU cores (load ~0 at the start, ~3.8 at the end): 127 s wall, data preparation
included; held-out (Persuasion) MLM accuracy 0.27 (0.15 at step 2000, before the
plateau breaks near step 3000). It ends by printing 4 held-out fill-mask lines
(train.show_fill_mask).

  python -m lm_jax.main --config=configs/bert_base.py:tiny --workdir=runs/tiny

tiny (CPU demo): 2 layers, hidden 128, seq 128, batch 32, 300 steps on the
embedded Austen corpus, ~24k tokens/s on 2 idle CPU cores (about 1.5 minutes
with the tokenizer). Expect the loss (MLM + NSP) to fall from ~9.7 to ~7.0
and held-out (Persuasion) MLM accuracy to reach ~9%: the model learns word
frequencies; context needs more steps (e.g. --config.train.steps=3000).

  python -m lm_jax.main --config=configs/bert_base.py --workdir=runs/bert_base \
      --config.data.tfds_name=wikipedia/20230601.en --config.train.batch_size=256

base (the default): BERT-base 12/768/12 with the paper's schedule: 1M steps
of batch 256 at seq 128, Adam lr 1e-4, 10k warm-up steps, linear decay,
weight decay 0.01. large: 24/1024/16. Both need a real corpus: the embedded
one is too small for a 30522-piece vocabulary.

large_batch: BERT-large with LAMB at batch 65536 (You et al. 2019, "Large Batch
Optimization for Deep Learning: Training BERT in 76 minutes", arXiv:1904.00962:
batch 65536 at seq 128, then 32768 at seq 512, 8599 steps in all), with the
seq-128 phase's numbers as NVIDIA's DeepLearningExamples publishes them
(PyTorch/LanguageModeling/BERT/scripts/run_pretraining.sh, phase 1): 7038 steps,
lr 6e-3, warm-up 28.43% (2001 steps), 20 predictions a sequence, LAMB weight decay
0.01 (none on biases and LayerNorm, which also skip the trust ratio, as in NVIDIA's
FusedLAMB), gradients clipped at norm 1.0. NVIDIA decays the lr as (1 - t/T)^0.5;
lm_jax decays it linearly. The seq-512 phase is not part of this variant. Set
train.grad_accum_steps to fit the micro-batch in memory (NVIDIA: 128 micro-batches
of 64 sequences on each of 8 GPUs).
"""
from lm_jax.config import base_config, bert_model


def get_config(variant="base"):
  c = base_config()
  variant = variant or "base"
  if variant == "tiny":
    c.model = bert_model(vocab_size=8000, hidden_size=128, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=512,
                         max_position_embeddings=128)
    c.train.update(steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30,
                   log_every=20, eval_every=100, eval_steps=4, checkpoint_every=100)
  elif variant == "demo":
    # The README's first command: past the unigram plateau in ~2 minutes on 2 cores. A narrow
    # model (more steps a second), short sequences, a 2000-piece vocabulary, no dropout, 4 heads
    # and a larger init, and NSP off (every B follows A): NSP's gradient slowed the MLM.
    c.model = bert_model(vocab_size=2000, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=256, max_position_embeddings=128,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         initializer_range=0.05)
    c.data.update(seq_len=32, max_predictions_per_seq=5, nsp_probability=0.0)
    c.train.update(steps=6000, batch_size=32, learning_rate=2e-3, warmup_steps=100,
                   log_every=500, eval_every=2000, eval_steps=8, checkpoint_every=2000,
                   show_fill_mask=4)  # print 4 held-out fill-mask lines at the end (main.py)
  elif variant == "base":
    c.model = bert_model()
    c.train.update(steps=1_000_000, batch_size=256, learning_rate=1e-4,
                   warmup_steps=10_000, log_every=100, eval_every=10_000,
                   checkpoint_every=10_000,
                   # The paper's 90/10 recipe: 900k steps at seq_len 128, then 100k at 512
                   # (batch 256 both; 20 predictions a sequence at 128, so 80 at 512).
                   phases="128:900000,512:100000")
    c.model.dtype = "bfloat16"
  elif variant == "large":
    c.model = bert_model(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                         intermediate_size=4096, dtype="bfloat16")
    c.train.update(steps=1_000_000, batch_size=256, learning_rate=1e-4,
                   warmup_steps=10_000, log_every=100, eval_every=10_000,
                   checkpoint_every=10_000)
  elif variant == "large_batch":
    c.model = bert_model(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                         intermediate_size=4096, dtype="bfloat16")
    c.data.update(seq_len=128, max_predictions_per_seq=20)
    c.train.update(steps=7038, batch_size=65536, optimizer="lamb", learning_rate=6e-3,
                   warmup_steps=2001, weight_decay=0.01, max_grad_norm=1.0, log_every=10,
                   eval_every=1000, checkpoint_every=200)
  else:
    raise ValueError(f"unknown variant {variant!r}; use tiny, demo, base, large or large_batch")
  # The mesh (base_config: data=-1, all devices data-parallel) is set per machine,
  # on the command line or here. Two examples (WORKSPACE.md has the launch commands):
  #
  # A v5p-256 pod (128 chips on 32 hosts), one slice: parameters and optimizer
  # state sharded over all chips, which share the fast ICI network.
  #   c.mesh.update(data=1, fsdp=-1, tensor=1)   # fsdp = 128
  #   c.train.batch_size = 4096                   # 32 sequences per chip
  #
  # 4 nodes x 8 H100 (launch/slurm_gpu.sbatch): FSDP over NVLink inside a node,
  # data parallelism across the nodes' slower network.
  #   c.mesh.update(dcn_data=4, data=1, fsdp=8, tensor=1)
  #   c.train.batch_size = 1024                   # 32 sequences per GPU
  return c
