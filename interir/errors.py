"""User-facing error type: anything raised as InterIRError is printed as one line by the CLI
and shown as a message by the app, never as a traceback."""


class InterIRError(Exception):
    """A problem with the user's input, files or configuration (not a bug)."""
