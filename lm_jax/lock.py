"""One writer per workdir: WORKDIR/lock.json, held by process 0 of a run.

    with lock.WorkdirLock(workdir):  # process 0 only, before anything is written
      ...                            # the run

or `l = WorkdirLock(workdir); l.acquire(); ...; l.release()`. A second live
run on the same workdir gets one UserError naming the holder (process, host,
since when). A lock left by a run that is gone is taken over with a printed
note: on the same host when its process no longer exists, and on any host
when its heartbeat (rewritten by the holder every `heartbeat_s` seconds from
a daemon thread) is older than `stale_s`.

Only process 0 of a multi-process run takes the lock (the others write
nothing the lock protects); take it before the first write to the workdir
and release it (the `with` block's end) after the last, checkpoints closed.

The lock file is created atomically (O_CREAT | O_EXCL, which NFS and other
shared file systems honour) and taken over by an atomic replace, then read
back after a pause to confirm that no other process took it over at the same
time. On gs:// the lock is an object created only if absent (GCS's
if_generation_match=0 precondition), replaced and deleted like a file. All
file access is in the few _file functions below.
"""
import datetime
import json
import os
import socket
import threading
import time
import uuid

from lm_jax import paths
from lm_jax.errors import UserError

LOCK_FILE = "lock.json"
_HELD = set()  # lock paths this process holds (a second acquire in-process is refused too)


# ---- file operations (the only ones): local files, or gs:// objects -----------

def _blob(path):
  """The GCS object of a gs:// path (a create-if-absent needs GCS's own preconditions)."""
  from google.cloud import storage  # pylint: disable=g-import-not-at-top  # gs:// runs only
  bucket, _, name = path[len("gs://"):].partition("/")
  return storage.Client().bucket(bucket).blob(name)


def _file_create(path, text):
  """Creates `path` holding `text`; False if it exists already."""
  if paths.is_remote(path):
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    try:
      _blob(path).upload_from_string(text, if_generation_match=0)  # only if absent
    except exceptions.PreconditionFailed:
      return False
    return True
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    f.write(text)
  return True


def _file_read(path):
  """The text of `path`, or None if it does not exist."""
  if paths.is_remote(path):
    return paths.read_text(path) if paths.exists(path) else None
  try:
    with open(path) as f:
      return f.read()
  except FileNotFoundError:
    return None


def _file_replace(path, text):
  """Atomically replaces `path` (or creates it) with `text`."""
  paths.write_text(path, text)  # a rename locally, one upload on gs://


def _file_remove(path):
  paths.remove(path)


# ---- the lock ----------------------------------------------------------------

def _pid_alive(pid):
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


class WorkdirLock:

  def __init__(self, workdir, *, heartbeat_s=30.0, stale_s=300.0, settle_s=1.0):
    """`stale_s`: a holder on another host whose heartbeat is older is gone.
    `settle_s`: the pause before a takeover is confirmed."""
    self.workdir = paths.absolute(workdir)
    self.path = paths.join(self.workdir, LOCK_FILE)
    self.heartbeat_s, self.stale_s, self.settle_s = heartbeat_s, stale_s, settle_s
    self.token = None
    self._stop = threading.Event()
    self._thread = None

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *_):
    self.release()

  def _record(self, since=None):
    return json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), token=self.token,
                           since=since or datetime.datetime.now().isoformat(timespec="seconds"),
                           heartbeat=time.time()))

  def _holder(self):
    """The lock file's record; {} if it is unreadable (being written, or torn)."""
    for _ in range(5):
      text = _file_read(self.path)
      if text is None:
        return None
      try:
        return json.loads(text)
      except ValueError:
        time.sleep(0.1)  # a creator between O_EXCL and its write
    return {}

  def _gone(self, holder):
    """Why the `holder` of the lock is no longer running, or None if it may be."""
    if not holder:
      return "its lock file is unreadable"
    pid, same_host = holder.get("pid"), holder.get("host") == socket.gethostname()
    if same_host and pid == os.getpid():
      return None if self.path in _HELD else "it was this process, earlier"
    if same_host and not _pid_alive(pid):
      return "that process no longer exists"
    # Another host, or a live PID that may be another program now (a restarted container).
    age = time.time() - holder.get("heartbeat", 0)
    return f"its heartbeat is {age:.0f} s old" if age > self.stale_s else None

  def acquire(self):
    """Takes the lock, or raises UserError if a live run holds it."""
    paths.makedirs(self.workdir)
    self.token = uuid.uuid4().hex
    for _ in range(3):  # a takeover that loses to another is evaluated again
      if _file_create(self.path, self._record()):
        break
      holder = self._holder()
      if holder is None:  # released meanwhile
        continue
      why = self._gone(holder)
      if why is None:
        raise UserError(f"{self.workdir} is in use by process {holder.get('pid')} on "
                        f"{holder.get('host')} since {holder.get('since')}; stop it, or wait "
                        f"for it to end (if it is gone, remove {self.path}).")
      _file_replace(self.path, self._record())
      time.sleep(self.settle_s)  # another taking it over at the same time replaces it too
      if (self._holder() or {}).get("token") == self.token:
        print(f"Note: took over the lock of {self.workdir} from process {holder.get('pid')} "
              f"on {holder.get('host')} ({why}).", flush=True)
        break
    else:
      raise UserError(f"Could not lock {self.workdir}: other processes keep taking it; "
                      "make sure only one run uses this workdir.")
    _HELD.add(self.path)
    self._stop.clear()
    self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-lock")
    self._thread.start()

  def _beat(self):
    """Refreshes the heartbeat while the lock is still ours."""
    since = (self._holder() or {}).get("since")
    while not self._stop.wait(self.heartbeat_s):
      holder = self._holder()
      if not holder or holder.get("token") != self.token:
        print(f"Warning: the lock of {self.workdir} was taken over by process "
              f"{(holder or {}).get('pid')} on {(holder or {}).get('host')}.", flush=True)
        return
      _file_replace(self.path, self._record(since))

  def release(self):
    """Stops the heartbeat and removes the lock file if it is still ours."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self.path in _HELD:
      _HELD.discard(self.path)
      if (self._holder() or {}).get("token") == self.token:
        _file_remove(self.path)
