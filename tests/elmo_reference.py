"""Runs LTG's simple_elmo on an lm_jax ELMo export (inside its own virtualenv).

  VENV/bin/python tests/elmo_reference.py EXPORT_DIR SENTENCES.json OUT.npz

Writes OUT.npz with `layers` [batch, n_layers + 1, words, 2P]: simple_elmo's
`get_elmo_vectors(..., warmup=False, layers="all")` in a fresh session, i.e.
from zero LSTM states (see shared/formats/bilm-elmo-hdf5.md, section 4.9).
This file imports nothing of lm_jax: the environment has TensorFlow, not JAX.
"""
import importlib.util
import json
import os
import sys
import tempfile

if importlib.util.find_spec("tf_keras") is not None:
  os.environ["TF_USE_LEGACY_KERAS"] = "1"  # simple_elmo needs Keras 2 under TF >= 2.16
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
from simple_elmo import ElmoModel  # pylint: disable=g-import-not-at-top


def main(export_dir, sentences_path, out_path):
  with open(sentences_path) as f:
    sentences = json.load(f)
  with tempfile.TemporaryDirectory() as scratch:  # model.hdf5 removes any ambiguity
    os.symlink(os.path.join(os.path.abspath(export_dir), "weights.hdf5"),
               os.path.join(scratch, "model.hdf5"))
    for name in ("options.json", "vocab.txt"):
      os.symlink(os.path.join(os.path.abspath(export_dir), name), os.path.join(scratch, name))
    model = ElmoModel()
    model.load(scratch, max_batch_size=max(len(sentences), 1))
    layers = model.get_elmo_vectors(sentences, warmup=False, layers="all")
  np.savez(out_path, layers=np.asarray(layers, np.float32))


if __name__ == "__main__":
  main(*sys.argv[1:4])
