"""HF byte-level BPE checkpoints (GPT-2 and RoBERTa layouts, as the hub's gpt2
and roberta-base are): lm_jax.load with the directory's own special tokens
and transformers' logits, fill-mask equal to the transformers pipeline,
continued pre-training and fine-tuning through init.from_hf, and the export
back with the very tokenizer files; and the inference bench against
transformers.

The directories are built offline with tokenizers + transformers (a BPE
trained on Austen, random weights perturbed away from their initial values).
CPU, float32; nothing is downloaded.
"""
import filecmp
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from conftest import override, tiny_config
import lm_jax
from lm_jax import bench_inference, export, train
from lm_jax.data import tokenizer as tokenizer_lib
from lm_jax.errors import UserError
from lm_jax.inference import causal, encoder
from test_inference import TEXTS, sentences

TOLERANCE = 1e-4


def byte_level_bpe(specials, out, **roles):
  """A byte-level BPE trained on Austen, saved as transformers does plus
  vocab.json / merges.txt (as the hub's gpt2 and roberta-base have them)."""
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(sentences(3000, "train"), trainers.BpeTrainer(
      vocab_size=600, special_tokens=specials[:-1], show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  # The last special token takes the last id, as <|endoftext|> and <mask> do.
  tok.add_special_tokens([AddedToken(specials[-1], special=True, normalized=False,
                                     lstrip=specials[-1] == "<mask>")])
  if "cls_token" in roles:
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      add_prefix_space=False)
    fast = transformers.RobertaTokenizerFast(tokenizer_object=tok, **roles)
  else:
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = transformers.GPT2TokenizerFast(tokenizer_object=tok, **roles)
  fast.save_pretrained(out)
  tok.model.save(out)
  with open(os.path.join(out, "vocab.json"), "w") as f:
    json.dump(tok.get_vocab(with_added_tokens=True), f)
  return fast


def perturbed(model):
  torch.manual_seed(1)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("gpt2"))
  eot = "<|endoftext|>"
  tok = byte_level_bpe([eot], out, bos_token=eot, eos_token=eot, unk_token=eot)
  perturbed(transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4,
      bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))).save_pretrained(out)
  return out


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("roberta"))
  tok = byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], out, bos_token="<s>",
                       eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                       pad_token="<pad>", mask_token="<mask>")
  perturbed(transformers.RobertaForMaskedLM(transformers.RobertaConfig(
      vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=66, type_vocab_size=1,
      pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2))).save_pretrained(out)
  return out


def hf_causal_logits(hf_dir, rows):
  model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
  with torch.no_grad():
    return [model(torch.tensor([r])).logits[0].numpy() for r in rows]


def assert_same_causal_logits(ours, theirs, rows):
  for i, (x, r) in enumerate(zip(theirs, rows)):
    assert np.abs(ours[i, :len(r)] - x).max() <= TOLERANCE


ODD = ["Emma was rich.", "  two  spaces", "Café naïve <|endoftext|> x", "tab\tnew\nline", ""]


def test_gpt2_layout_loads_with_its_own_special_tokens(gpt2_dir, tmp_path):
  model = lm_jax.load(gpt2_dir)
  tok = model.tokenizer
  assert isinstance(model, causal.CausalLM)
  assert tok.sep_id == tok.pad_id == tok.vocab_size - 1 == 600  # <|endoftext|>, no pad added
  assert not tok.has("mask_token")
  theirs = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
  assert tok.encode(ODD) == [theirs(t, add_special_tokens=False)["input_ids"] for t in ODD]
  rows = model.token_ids(TEXTS)
  assert all(r[0] == theirs.eos_token_id for r in rows)  # each text begins a document
  assert_same_causal_logits(model.logits(TEXTS), hf_causal_logits(gpt2_dir, rows), rows)
  # vocab.json + merges.txt alone (no tokenizer.json) give the same ids.
  files_only = str(tmp_path / "files")
  os.makedirs(files_only)
  for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
    os.link(os.path.join(gpt2_dir, name), os.path.join(files_only, name))
  assert tokenizer_lib.load(files_only).encode(ODD) == tok.encode(ODD)
  with pytest.raises(UserError, match="has no mask token, which masked-LM training and "
                                      "fill_mask need"):
    tok.mask_id


def test_roberta_layout_fill_mask_equals_the_transformers_pipeline(roberta_dir):
  model = lm_jax.load(roberta_dir)
  assert isinstance(model, encoder.MaskedLM) and model.tokenizer.pad_id == 1
  texts = ["She was the <mask> of the two daughters.", "Emma <mask> rich."]
  pipe = transformers.pipeline("fill-mask", model=roberta_dir, tokenizer=roberta_dir, top_k=4)
  for text in texts:
    theirs, ours = pipe(text), model.fill_mask(text, top_k=4)
    assert [c["token"] for c in ours] == [c["token"] for c in theirs]
    assert [c["token_str"] for c in ours] == [c["token_str"] for c in theirs]
    assert [c["sequence"] for c in ours] == [c["sequence"] for c in theirs]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs)) < 1e-5
  assert model.fill_mask(texts[0].replace("<mask>", "[MASK]"), top_k=4) == model.fill_mask(
      texts[0], top_k=4)
  hf = transformers.AutoModelForMaskedLM.from_pretrained(roberta_dir).eval()
  batch = transformers.AutoTokenizer.from_pretrained(roberta_dir)(texts + ODD, padding=True,
                                                                  return_tensors="pt")
  with torch.no_grad():
    theirs = hf(**batch).logits.numpy()
  ids, _, mask = model.encode(texts + ODD)
  np.testing.assert_array_equal(ids, batch["input_ids"].numpy())
  real = mask[..., None].astype(bool)
  assert np.abs(np.where(real, model.mlm_logits(texts + ODD) - theirs, 0)).max() <= TOLERANCE


def same_tokenizer_files(source, exported):
  names = [n for n in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json")
           if os.path.exists(os.path.join(source, n))]
  assert names and all(filecmp.cmp(os.path.join(source, n), os.path.join(exported, n),
                                   shallow=False) for n in names)


def test_gpt2_layout_continued_pretraining_exports_the_same_tokenizer(gpt2_dir, tmp_path):
  from configs import gpt2
  workdir, out, corpus = str(tmp_path / "run"), str(tmp_path / "hf"), tmp_path / "corpus.txt"
  corpus.write_text("\n\n".join(sentences(400, "train")))  # a small corpus prepares fast
  config = override(gpt2.get_config("tiny"), {
      "init.from_hf": gpt2_dir, "data.files": str(corpus), "data.seq_len": 32,
      "train.steps": 2, "train.batch_size": 4,
      "train.learning_rate": 1e-3, "train.eval_every": 0, "train.checkpoint_every": 2,
      "train.log_every": 1, "train.warmup_steps": 1})
  train.run(config, workdir)
  export.export(workdir, out)
  same_tokenizer_files(gpt2_dir, out)
  with open(os.path.join(out, "config.json")) as f:
    hf_config = json.load(f)
  assert hf_config["bos_token_id"] == hf_config["eos_token_id"] == 600
  assert "pad_token_id" not in hf_config  # GPT-2 has none; padding is masked
  model = lm_jax.load(workdir)
  rows = model.token_ids(TEXTS)
  assert rows == lm_jax.load(gpt2_dir).token_ids(TEXTS)
  ours = model.logits(TEXTS)
  assert np.abs(ours - lm_jax.load(gpt2_dir).logits(TEXTS)).max() > 1e-3  # it trained
  assert_same_causal_logits(ours, hf_causal_logits(out, rows), rows)


def test_roberta_layout_fine_tuning_exports_the_same_tokenizer(roberta_dir, tmp_path):
  from configs import finetune_reviews
  from lm_jax.data import reviews
  data = tmp_path / "train.jsonl"
  data.write_text("".join(json.dumps(r) + "\n" for r in reviews.make(16, seed=0)))
  workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
  config = override(finetune_reviews.get_config(), {
      "init.from_hf": roberta_dir, "data.files": str(data), "data.eval_files": str(data),
      "train.steps": 2, "train.batch_size": 4, "train.eval_every": 0,
      "train.checkpoint_every": 2, "train.log_every": 1, "train.warmup_steps": 1})
  train.run(config, workdir)
  export.export(workdir, out)
  same_tokenizer_files(roberta_dir, out)
  model = lm_jax.load(workdir)
  texts = ["the acting was wonderful and moving.", "what a dull, tedious plot."]
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  batch = transformers.AutoTokenizer.from_pretrained(out)(texts, padding=True,
                                                          return_tensors="pt")
  np.testing.assert_array_equal(model.encode(texts)[0], batch["input_ids"].numpy())
  with torch.no_grad():
    theirs = hf(**batch).logits.numpy()
  assert np.abs(model.logits(texts) - theirs).max() <= TOLERANCE
  label, prob = model.predict(texts[0])
  assert label in reviews.LABELS and 0 < prob < 1


def test_inference_bench_runs_both_sides(tokenizer_dir):
  lines = []
  bench_inference.inference_mode(tiny_config(tokenizer_dir), peer=True, num_texts=16,
                                 batch_size=16, repeats=1, emit=lines.append)
  by_name = {line["bench"] + line.get("workload", ""): line for line in lines}
  assert {"lm_jax_encode", "lm_jax_embed", "transformers_encode", "transformers_embed",
          "ratioencode", "ratioembed"} == set(by_name)
  assert by_name["transformers_encode"]["texts"] == 16 and by_name["ratioembed"][
      "lm_jax_over_transformers"] > 0


