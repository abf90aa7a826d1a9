"""The project's single exception type.

Every error a user can cause (a bad file, a wrong flag, an engine built elsewhere) is raised as
:class:`RetinaFaceError` with a message that says what was expected, what was found, and how to fix it.
The CLI prints that message on one line and exits with status 1, without a traceback.
"""


class RetinaFaceError(Exception):
    """A user-facing error: the message is complete and meant to be printed as is."""
