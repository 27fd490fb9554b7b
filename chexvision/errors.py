"""The exception types for what a user or the machine can cause (bad input, a full disk).

``chexvision.cli.main`` turns either into one line on stderr and its ``exit_code`` (2 for bad
input, 1 for an environment failure), never a traceback.
"""


class UserError(Exception):
    """A problem with the user's input that a clear one-line message can explain (exit 2)."""

    exit_code = 2


class EnvironmentFailure(UserError):
    """The machine, not the input, failed: disk full, no permission (exit 1)."""

    exit_code = 1
