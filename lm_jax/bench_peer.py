"""The PyTorch peer of `lm_jax.bench`: what a user would run instead.

The same sizes, batch and sequence length as the lm_jax config, trained with
AdamW, one model per family:

  bert     transformers BertForPreTraining (MLM + next-sentence prediction)
  roberta  RobertaForMaskedLM
  albert   AlbertForPreTraining (MLM + sentence order)
  electra  ElectraForMaskedLM (generator) + ElectraForPreTraining
           (discriminator) sharing the embeddings: generator MLM + weight x
           replaced-token loss in one step, as lm_jax trains it
  gpt2     GPT2LMHeadModel
  elmo     BiLM below: char CNN + highway + one nn.LSTM with proj_size per
           direction and layer (cuDNN on a GPU), the sampled softmax of the
           same size, the LSTM state carried from step to step

Measured as ../shared/bench/peer_gpu.py does: on CUDA with bf16 autocast, SDPA
attention, fused AdamW and torch.compile (not for ELMo: its time is in
cuDNN's LSTM kernel, which compile does not enter); on CPU in float32, eager.
The batch is random, with every row full and data.max_predictions_per_seq
masked positions a row, as lm_jax's synthetic batch. FLOPs per token come
from the lm_jax family's flops_per_token, the one function both sides call.

Called by bench.py with a JSON spec (config sections, workload name, steps,
warmup, peak_tflops); prints one JSON line. Needs torch and transformers
(test-only dependencies of lm_jax).
"""
import json
import sys
import time

import ml_collections
import torch
import transformers
from torch import nn

from lm_jax import families
from lm_jax.models.elmo import N_CHARACTERS
from lm_jax.objectives import sampled_softmax


def encoder_config(cls, m, **extra):
  """An HF config of the lm_jax model section `m` (BertConfig's key names), `extra` on top."""
  return cls(**{**dict(
      vocab_size=m.vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers,
      num_attention_heads=m.num_attention_heads, intermediate_size=m.intermediate_size,
      max_position_embeddings=m.max_position_embeddings, type_vocab_size=m.type_vocab_size,
      hidden_dropout_prob=m.hidden_dropout_prob,
      attention_probs_dropout_prob=m.attention_probs_dropout_prob,
      layer_norm_eps=m.layer_norm_eps, attn_implementation="sdpa"), **extra})


def mlm_inputs(c, dev, pairs=False):
  """Full rows of random ids, MLM labels at max_predictions_per_seq distinct positions."""
  b, t, p, v = c.train.batch_size, c.data.seq_len, c.data.max_predictions_per_seq, c.model.vocab_size
  ids = torch.randint(5, v, (b, t), device=dev)  # 0..4: special pieces (RoBERTa's pad among them)
  positions = torch.rand(b, t - 1, device=dev).argsort(-1)[:, :p] + 1  # never [CLS]
  targets = torch.randint(5, v, (b, p), device=dev)
  labels = torch.full_like(ids, -100).scatter(1, positions, targets)
  types = (torch.arange(t, device=dev) >= t // 2).long().expand(b, t) if pairs else torch.zeros_like(ids)
  return dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=types,
              labels=labels), positions, targets


def bert(c, dev):
  model = transformers.BertForPreTraining(encoder_config(transformers.BertConfig, c.model))
  inputs, _, _ = mlm_inputs(c, dev, pairs=True)
  inputs["next_sentence_label"] = torch.randint(0, 2, (c.train.batch_size,), device=dev)
  return model, inputs


def roberta(c, dev):
  model = transformers.RobertaForMaskedLM(encoder_config(
      transformers.RobertaConfig, c.model, pad_token_id=c.model.pad_token_id))
  return model, mlm_inputs(c, dev)[0]


def albert(c, dev):
  m = c.model
  model = transformers.AlbertForPreTraining(encoder_config(
      transformers.AlbertConfig, m, embedding_size=m.embedding_size, hidden_act=m.hidden_act,
      num_hidden_groups=1, inner_group_num=1, classifier_dropout_prob=m.classifier_dropout_prob))
  inputs, _, _ = mlm_inputs(c, dev, pairs=True)
  inputs["sentence_order_label"] = torch.randint(0, 2, (c.train.batch_size,), device=dev)
  return model, inputs


class Electra(nn.Module):
  """HF's generator and discriminator sharing one embeddings module, one loss."""

  def __init__(self, m):
    super().__init__()
    self.discriminator = transformers.ElectraForPreTraining(encoder_config(
        transformers.ElectraConfig, m, embedding_size=m.embedding_size))
    self.generator = transformers.ElectraForMaskedLM(encoder_config(
        transformers.ElectraConfig, m, embedding_size=m.embedding_size,
        hidden_size=m.generator_hidden_size, num_hidden_layers=m.generator_num_hidden_layers,
        num_attention_heads=m.generator_num_attention_heads,
        intermediate_size=m.generator_intermediate_size))
    shared = self.discriminator.electra.embeddings
    self.generator.electra.embeddings = shared
    self.generator.generator_lm_head.weight = shared.word_embeddings.weight
    self.weight = m.discriminator_weight

  def forward(self, input_ids, attention_mask, token_type_ids, labels, positions, targets,
              uniform):
    gen = self.generator(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids, labels=labels)
    with torch.no_grad():  # sample the replacements by inverting the softmax's CDF, as lm_jax
      logits = gen.logits.gather(1, positions[..., None].expand(-1, -1, gen.logits.shape[-1]))
      cdf = logits.float().softmax(-1).cumsum(-1)
      sampled = (cdf < uniform[..., None]).sum(-1).clamp(max=cdf.shape[-1] - 1)
    original = input_ids.scatter(1, positions, targets)
    corrupted = original.scatter(1, positions, sampled)
    disc = self.discriminator(input_ids=corrupted, attention_mask=attention_mask,
                              token_type_ids=token_type_ids,
                              labels=(corrupted != original).long())
    return gen.loss + self.weight * disc.loss


def electra(c, dev):
  inputs, positions, targets = mlm_inputs(c, dev)
  uniform = torch.rand(positions.shape, device=dev)
  return Electra(c.model), dict(inputs, positions=positions, targets=targets, uniform=uniform)


def gpt2(c, dev):
  m = c.model
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=m.vocab_size, n_positions=m.n_positions, n_embd=m.n_embd, n_layer=m.n_layer,
      n_head=m.n_head, n_inner=None if m.n_inner == -1 else m.n_inner,
      resid_pdrop=m.resid_pdrop, embd_pdrop=m.embd_pdrop, attn_pdrop=m.attn_pdrop,
      layer_norm_epsilon=m.layer_norm_epsilon, attn_implementation="sdpa"))
  ids = torch.randint(0, m.vocab_size, (c.train.batch_size, c.data.seq_len), device=dev)
  return model, dict(input_ids=ids, labels=ids)


class CharEncoder(nn.Module):
  """Token vectors [b, t, P] from character ids [b, t, C]: convolutions, max over
  characters, activation, highway layers, projection (lm_jax's CharEncoder)."""

  def __init__(self, m):
    super().__init__()
    e, f = m.char_embedding_dim, sum(n for _, n in m.filters)
    self.embed = nn.Embedding(N_CHARACTERS, e)
    self.convs = nn.ModuleList(nn.Conv1d(e, n, w) for w, n in m.filters)
    self.highway = nn.ModuleList(nn.Linear(f, 2 * f) for _ in range(m.n_highway))  # carry | transform
    self.projection = nn.Linear(f, m.projection_dim) if f != m.projection_dim else nn.Identity()
    self.act = torch.relu if m.activation == "relu" else torch.tanh

  def forward(self, chars):
    b, t, c = chars.shape
    x = self.embed(chars.reshape(b * t, c)).transpose(1, 2)  # [tokens, E, C]
    x = torch.cat([self.act(conv(x).amax(-1)) for conv in self.convs], -1)
    for layer in self.highway:
      carry, transform = layer(x).chunk(2, -1)
      gate = torch.sigmoid(carry)
      x = gate * torch.relu(transform) + (1 - gate) * x
    return self.projection(x).reshape(b, t, -1)


class BiLM(nn.Module):
  """ELMo's biLM: both LMs over their own streams, sampled softmax shared.

  Differences from lm_jax that cost no matmul: no cell or projection clipping
  (cuDNN has none) and two LSTM biases (PyTorch's b_ih and b_hh) instead of one.
  """

  def __init__(self, m, batch_size):
    super().__init__()
    p, d, v = m.projection_dim, m.lstm_dim, m.vocab_size
    self.encoder = CharEncoder(m)
    proj = p if p < d else 0
    self.lstms = nn.ModuleList(nn.ModuleList(nn.LSTM(p, d, proj_size=proj, batch_first=True)
                                             for _ in range(m.n_layers)) for _ in range(2))
    self.softmax_w = nn.Parameter(torch.randn(v, p) / p ** 0.5)
    self.softmax_b = nn.Parameter(torch.zeros(v))
    # The log-uniform sampler and its logit correction, as a table (lm_jax's).
    self.register_buffer("log_p", torch.tensor(sampled_softmax.log_uniform_log_probs(v)).float())
    self.register_buffer("log_q", torch.tensor(
        sampled_softmax.log_expected_counts(v, m.n_negative_samples)))
    self.num_sampled, self.rate, self.residual = m.n_negative_samples, m.dropout, m.use_skip_connections
    zeros = lambda width: torch.zeros(1, batch_size, width)
    self.state = [[(zeros(proj or d), zeros(d)) for _ in range(m.n_layers)] for _ in range(2)]
    self.lstm_fp32 = False  # set when cuDNN refuses a bf16 LSTM under autocast

  def _lstm(self, lstm, x, state):
    state = tuple(s.to(x.device) for s in state)
    if not self.lstm_fp32:
      try:
        return lstm(x, tuple(s.to(x.dtype) for s in state))
      except RuntimeError:  # an older cuDNN: no bf16 RNN; run the LSTMs in float32
        self.lstm_fp32 = True
    with torch.autocast(x.device.type, enabled=False):
      return lstm(x.float(), tuple(s.float() for s in state))

  def _loss(self, x, labels):
    if self.num_sampled >= self.softmax_w.shape[0] - 1:  # every class a negative: exact loss
      return nn.functional.cross_entropy(x @ self.softmax_w.T + self.softmax_b, labels)
    gumbel = -torch.log(-torch.log(torch.rand_like(self.log_p).clamp_min(1e-20)))
    sampled = torch.topk(self.log_p + gumbel, self.num_sampled).indices  # distinct classes
    w, b, log_q = self.softmax_w, self.softmax_b, self.log_q
    true = (x * w[labels]).sum(-1) + b[labels] - log_q[labels]
    logits = x @ w[sampled].T + b[sampled] - log_q[sampled]
    logits = logits.masked_fill(sampled[None, :] == labels[:, None], -1e30)  # accidental hits
    return (torch.logsumexp(torch.cat([true[:, None], logits], 1), 1) - true).mean()

  def forward(self, chars, chars_reverse, next_ids, next_ids_reverse):
    loss, new_state = 0.0, []
    drop = lambda x: nn.functional.dropout(x, self.rate, self.training)
    for lstms, state, stream, labels in zip(self.lstms, self.state, (chars, chars_reverse),
                                            (next_ids, next_ids_reverse)):
      x, carried = self.encoder(stream), []
      for l, (lstm, s) in enumerate(zip(lstms, state)):
        inputs = drop(x)
        h, (hn, cn) = self._lstm(lstm, inputs, s)
        x = h + inputs if (self.residual and l >= 1) else h
        carried.append((hn.detach(), cn.detach()))  # truncated backprop: carry the state only
      new_state.append(carried)
      x = drop(x)
      loss = loss + self._loss(x.reshape(-1, x.shape[-1]).float(), labels.reshape(-1)) / 2
    self.state = new_state
    return loss


def elmo(c, dev):
  b, t, m = c.train.batch_size, c.data.seq_len, c.model
  chars = lambda: torch.randint(0, N_CHARACTERS, (b, t, m.max_characters_per_token), device=dev)
  words = lambda: torch.randint(0, m.vocab_size, (b, t), device=dev)
  return BiLM(m, b), dict(chars=chars(), chars_reverse=chars(), next_ids=words(),
                          next_ids_reverse=words())


PEERS = dict(bert=bert, roberta=roberta, albert=albert, electra=electra, gpt2=gpt2, elmo=elmo)


def main(spec):
  config = ml_collections.ConfigDict(spec["config"])
  family = config.model.family
  cuda = torch.cuda.is_available()
  dev = "cuda" if cuda else "cpu"
  torch.manual_seed(0)
  model, inputs = PEERS[family](config, dev)
  model = model.to(dev).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
  compiled = cuda and family != "elmo"
  run = torch.compile(model) if compiled else model

  def step():
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=cuda):
      out = run(**inputs)
      loss = out if isinstance(out, torch.Tensor) else out.loss  # HF models return an output
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

  sync = torch.cuda.synchronize if cuda else (lambda: None)
  for _ in range(spec["warmup"]):
    step()
  sync()
  start = time.perf_counter()
  for _ in range(spec["steps"]):
    step()
  sync()
  seconds = (time.perf_counter() - start) / spec["steps"]

  fpt = families.FAMILIES[family].flops_per_token(config, None)
  tps = config.train.batch_size * config.data.seq_len / seconds
  peak = spec["peak_tflops"]
  kind = "torch_lstm" if family == "elmo" else "hf_torch"
  result = dict(
      bench=f"{kind}_{spec['workload']}", step_ms=round(seconds * 1e3, 2),
      tokens_per_s=round(tps), mfu=float(f"{tps * fpt / (peak * 1e12):.4g}") if peak else None,
      flops_per_token=fpt, params=sum(p.numel() for p in model.parameters()),
      peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
      device=torch.cuda.get_device_name() if cuda else "cpu",
      torch=torch.__version__, transformers=transformers.__version__,
      compiled=compiled, autocast_bf16=cuda)
  if family == "elmo":
    result["lstm_dtype"] = "float32" if (model.lstm_fp32 or not cuda) else "bfloat16"
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main(json.loads(sys.argv[1]))
