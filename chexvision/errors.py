"""The one exception type for a user's mistake (bad path, bad CSV, bad image, bad checkpoint).

``chexvision.cli.main`` turns it into one line on stderr and exit status 2, never a traceback.
"""


class UserError(Exception):
    """A problem with the user's input that a clear one-line message can explain."""
