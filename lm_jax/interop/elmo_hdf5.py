"""ELMo export: bilm-tf's weights.hdf5 + options.json + vocab.txt.

The directory loads in LTG's simple_elmo (`ElmoModel().load(DIR)`) and in
AllenNLP (`Elmo(DIR/options.json, DIR/weights.hdf5, ...)`) and gives the same
embeddings as lm_jax (shared/formats/bilm-elmo-hdf5.md is the format as its
real client reads it). `names` is the one table from our parameters to the
file's datasets; the softmax is not written (inference does not use it).
"""
import json
import os

import numpy as np

from lm_jax.errors import UserError

WEIGHTS_FILE = "weights.hdf5"
OPTIONS_FILE = "options.json"
INFERENCE_CHARACTERS = 262  # simple_elmo's check: 261 raw ids + batch padding


def _lstm_kernel(layer):
  """[x; h] rows, gate-major columns i, j, f, o (TF's LSTMCell kernel)."""
  p, _, d = layer["input_kernel"].shape
  return np.concatenate([layer["input_kernel"].reshape(p, 4 * d),
                         layer["recurrent_kernel"].reshape(-1, 4 * d)], axis=0)


def names(model_cfg):
  """[(dataset name, function params -> float32 array)] in bilm-tf's layout."""
  table = [("char_embed", lambda p: p["token_encoder"]["char_embed"])]
  for i in range(len(model_cfg.filters)):
    conv = lambda p, i=i: p["token_encoder"]["cnn"][i]
    table += [(f"CNN/W_cnn_{i}", lambda p, c=conv: c(p)["kernel"][None]),  # [1, w, E, n]
              (f"CNN/b_cnn_{i}", lambda p, c=conv: c(p)["bias"])]
  for k in range(model_cfg.n_highway):
    hw = lambda p, k=k: p["token_encoder"]["highway"][k]
    for gate in ("carry", "transform"):
      table += [(f"CNN_high_{k}/W_{gate}", lambda p, h=hw, g=gate: h(p)[g]["kernel"]),
                (f"CNN_high_{k}/b_{gate}", lambda p, h=hw, g=gate: h(p)[g]["bias"])]
  if sum(n for _, n in model_cfg.filters) != model_cfg.projection_dim:
    table += [("CNN_proj/W_proj", lambda p: p["token_encoder"]["projection"]["kernel"]),
              ("CNN_proj/b_proj", lambda p: p["token_encoder"]["projection"]["bias"])]
  for d, direction in enumerate(("forward_lstm", "backward_lstm")):
    for l in range(model_cfg.n_layers):
      cell = f"RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell"
      layer = lambda p, a=direction, l=l: p[a][l]
      table += [(f"{cell}/W_0", lambda p, f=layer: _lstm_kernel(f(p))),
                (f"{cell}/B", lambda p, f=layer: f(p)["bias"].reshape(-1))]  # forget bias not folded
      if model_cfg.projection_dim < model_cfg.lstm_dim:
        table.append((f"{cell}/W_P_0", lambda p, f=layer: f(p)["projection"]))
  return table


def options(model_cfg, data_cfg, train_cfg, num_train_tokens=None):
  """bilm-tf's options.json, with n_characters 262 for inference."""
  return {
      "bidirectional": True,
      "char_cnn": {
          "activation": model_cfg.activation,
          "embedding": {"dim": model_cfg.char_embedding_dim},
          "filters": [list(f) for f in model_cfg.filters],
          "max_characters_per_token": model_cfg.max_characters_per_token,
          "n_characters": INFERENCE_CHARACTERS,
          "n_highway": model_cfg.n_highway,
      },
      "dropout": model_cfg.dropout,
      "lstm": {
          "cell_clip": model_cfg.cell_clip,  # None -> null: no clipping (0 would clip to 0)
          "dim": model_cfg.lstm_dim,
          "n_layers": model_cfg.n_layers,
          "proj_clip": model_cfg.proj_clip,
          "projection_dim": model_cfg.projection_dim,
          "use_skip_connections": model_cfg.use_skip_connections,
      },
      "all_clip_norm_val": train_cfg.max_grad_norm,
      "batch_size": train_cfg.batch_size,
      "n_negative_samples_batch": model_cfg.n_negative_samples,
      "n_tokens_vocab": model_cfg.vocab_size,
      "unroll_steps": data_cfg.seq_len,
      **({"n_train_tokens": num_train_tokens} if num_train_tokens else {}),
  }


def save(out_dir, config, params, vocab):
  """Writes weights.hdf5, options.json and vocab.txt into `out_dir`."""
  import h5py  # pylint: disable=g-import-not-at-top
  if config.model.family != "elmo":
    raise UserError(f"--format=elmo exports ELMo runs, but this run is model.family="
                    f"{config.model.family!r}; use --format=hf.")
  os.makedirs(out_dir, exist_ok=True)
  others = [f for f in os.listdir(out_dir) if f.endswith(".hdf5") and f != WEIGHTS_FILE]
  if others:  # simple_elmo would read whichever .hdf5 it lists first
    raise UserError(f"{out_dir} already holds {others[0]}; export into an empty directory.")
  path = os.path.join(out_dir, WEIGHTS_FILE)
  tmp = path + ".tmp"
  with h5py.File(tmp, "w") as f:
    for name, get in names(config.model):
      f.create_dataset(name, data=np.asarray(get(params), np.float32))
  os.replace(tmp, path)
  with open(os.path.join(out_dir, OPTIONS_FILE), "w") as f:
    json.dump(options(config.model, config.data, config.train), f, indent=2, sort_keys=True)
  vocab.save(out_dir)
