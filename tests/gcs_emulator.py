"""gcp-storage-emulator, as tests/test_gcs.py runs it: `python tests/gcs_emulator.py start ...`.

Two mends to its downloads, both things real GCS does and our clients rely on:
- the object's generation in `x-goog-generation`: tensorstore's OCDBT (Orbax)
  cannot update a manifest it has read without it ("Malformed StorageGeneration"),
  so a checkpoint of more than a few arrays fails;
- suffix ranges (`Range: bytes=-N`, the last N bytes): ArrayRecord's C++ client
  reads a file's footer so; the emulator answers with the whole object, and every
  shard over 1 MiB reads as corrupt.
"""
import re
import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download
_SUFFIX_RANGE = re.compile(r"^\s*bytes=-(?P<length>[0-9]+)\s*$")


def _download_as_gcs(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # pylint: disable=broad-except (absent: the handler answers 404 itself)
    return _download(request, response, storage, *args, **kwargs)
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj["metageneration"])
  headers = request._request_handler.headers  # pylint: disable=protected-access
  suffix = _SUFFIX_RANGE.match(headers.get("range", ""))
  if suffix:
    size = int(obj["size"])
    del headers["range"]
    headers["range"] = f"bytes={max(0, size - int(suffix['length']))}-"
  return _download(request, response, storage, *args, **kwargs)


objects.download = _download_as_gcs  # before server.py builds its routing table
from gcp_storage_emulator import __main__ as emulator  # pylint: disable=g-import-not-at-top,wrong-import-position

if __name__ == "__main__":
  sys.exit(emulator.main(sys.argv[1:]))
