"""The Colab demos, colabs/*.ipynb, run top to bottom on tiny settings.

Each notebook runs in a fresh kernel of this Python (sys.executable, whatever
kernelspecs the machine has), from a temporary directory, with the repository
on PYTHONPATH (so its install cell is skipped) and LM_JAX_DEMO_* sizes that
make it take well under a minute. A failure shows the failing cell and its
traceback. A new notebook is picked up by the glob; it reads the LM_JAX_DEMO_*
variables that apply to it (colabs/README.md).
"""
import glob
import os
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from conftest import REPO

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colabs", "*.ipynb")))
TINY = {"LM_JAX_DEMO_STEPS": "20", "LM_JAX_DEMO_BATCH_SIZE": "8", "LM_JAX_DEMO_SEQ_LEN": "64"}
NOTEBOOK_TIMEOUT_S = 300  # each takes well under a minute on 2 idle cores


def this_python_kernel(spec_dir):
  """A KernelManager whose "python3" kernel is sys.executable -m ipykernel_launcher."""
  from ipykernel.kernelspec import write_kernel_spec  # pylint: disable=g-import-not-at-top
  write_kernel_spec(os.path.join(spec_dir, "python3"))  # argv[0] = sys.executable
  return KernelManager(kernel_name="python3",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[spec_dir]))


def test_notebooks_are_found():
  names = [os.path.basename(p) for p in NOTEBOOKS]
  assert {"pretrain_bert.ipynb", "elmo.ipynb", "finetune_classifier.ipynb"} <= set(names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)], \
      f"{path} is committed with outputs; clear them (Edit > Clear all outputs)"
  cwd, specs = tmp_path / "cwd", tmp_path / "kernels"
  cwd.mkdir()
  specs.mkdir()
  env = dict(os.environ, **TINY, LM_JAX_DEMO_DIR=str(tmp_path / "runs"),
             PYTHONPATH=os.pathsep.join([REPO, *filter(None, [os.environ.get("PYTHONPATH")])]),
             MPLBACKEND="module://matplotlib_inline.backend_inline", HF_HUB_OFFLINE="1")
  km = this_python_kernel(str(specs))
  deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S
  client = nbclient.NotebookClient(
      nb, km=km, resources={"metadata": {"path": str(cwd)}},
      timeout_func=lambda cell: max(1, int(deadline - time.monotonic())))
  start = time.monotonic()
  try:
    client.execute(env=env)  # CellExecutionError names the cell and shows its traceback
  finally:
    if km.is_alive():  # nbclient leaves a kernel it was handed running
      km.shutdown_kernel(now=True)
  print(f"{os.path.basename(path)}: {time.monotonic() - start:.1f} s")
  assert not os.listdir(cwd), "a notebook wrote into its working directory instead of ROOT"
