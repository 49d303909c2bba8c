"""The one exception type for failures a user can cause and fix."""


class UserError(Exception):
  """A mistake in the input (config, files, checkpoint) the user can fix.

  The message is one sentence: what is wrong and what to do. The command-line
  entry points print it without a traceback and exit with status 2.
  """
