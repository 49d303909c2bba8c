"""lm_jax: pre-training of contextualized language models in JAX/Flax."""
import glob
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithConfigs(build_py):
  """build_py that also copies the top-level configs/*.py into lm_jax/configs/.

  configs/ stays the one copy in git (the README and the docstrings name
  those paths); an installed package carries its own copy, which
  `--config=bert_base.py:tiny` and `lm_jax.validate` find (lm_jax/cli.py).
  An editable install reads the checkout's configs/ directly.
  """

  def run(self):
    super().run()
    target = os.path.join(self.build_lib, "lm_jax", "configs")
    self.mkpath(target)
    for path in sorted(glob.glob(os.path.join(HERE, "configs", "*.py"))):
      self.copy_file(path, os.path.join(target, os.path.basename(path)))


setup(
    name="lm_jax",
    version="0.1.0",
    description="Pre-train BERT-family encoders, GPT decoders and ELMo in JAX/Flax; "
                "export to HuggingFace (PyTorch) and bilm-tf.",
    python_requires=">=3.10",
    packages=find_packages(include=["lm_jax", "lm_jax.*"]),
    package_data={"lm_jax.data": ["corpus/*.txt.gz", "corpus/README.md"]},
    cmdclass={"build_py": BuildWithConfigs},
    install_requires=[
        "jax>=0.7.0",
        "flax>=0.12.0",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11.20",
        "grain>=0.2.12",
        "tensorflow-datasets>=4.9.9",
        "sentencepiece>=0.2.0",
        "ml_collections>=1.0.0",
        "absl-py>=2.1.0",
        "numpy>=1.26",
        "tensorboardX>=2.6",
        "safetensors>=0.4.3",
        "tokenizers>=0.20",
        "h5py>=3.10",         # ELMo export (bilm-tf weights.hdf5)
        "protobuf>=4.25",     # reading the sentencepiece model proto (tokenizer.json export)
        "tqdm>=4.60",         # inference's progress bar on long lists
        "array_record>=0.5",  # the prepared corpus's shards (Grain reads them)
        "etils[epath]>=1.7",  # lm_jax/paths.py: local and gs:// paths
        "gcsfs>=2024.2",      # gs:// under etils.epath (EPATH_USE_TF=false)
        "google-cloud-storage>=2.14",  # gs:// TensorBoard events and the workdir lock
    ],
    extras_require={
        # torch is a test-only dependency: install torch==2.13.0 (CPU) next to
        # this extra, as the README's test command does; never needed to train.
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "transformers>=4.50", "nbclient>=0.10",
                 "gcp-storage-emulator>=2024.8",  # tests/test_gcs.py: gs:// offline on 127.0.0.1
                 "datasets>=3.0",  # the HF peer of bench --mode=prepare (tests/test_bench.py)
                 "nbformat>=5.10", "ipykernel>=6.29",
                 "matplotlib>=3.8"],  # matplotlib: colabs/ (Colab has it)
        # python -m lm_jax.prepare --runner=beam (Dataflow, Flink, Spark). Beam pins
        # protobuf<7 and pyarrow<26: install it in a venv of its own (tests/test_beam.py).
        "beam": ["apache-beam>=2.60"],
    },
)
