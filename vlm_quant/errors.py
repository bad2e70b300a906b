"""The one exception type a user is meant to read.

Every check of user input (config keys, presets, paths, model names) raises ``UserError`` with a
message that names the offending value and the valid choices. Entry points print it without a
traceback and exit with status 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it."""
