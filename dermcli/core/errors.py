class DermcliError(Exception):
    """A problem with the user's input or files: shown as one line, exit code 1, no traceback."""
