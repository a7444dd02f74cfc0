"""User-facing errors.

Anything raised as a ``LarsrError`` is a mistake the user can fix (bad path, bad image, missing
model); the CLI prints its message as one line and exits non-zero without a traceback.
"""


class LarsrError(Exception):
    """An error whose message is meant for the user, one line, no traceback."""


class ModelError(LarsrError):
    """A model folder, manifest or download is missing, corrupt or of an unknown format."""


class ImageError(LarsrError):
    """An input image cannot be read or an output cannot be written."""


def printable(text: str) -> str:
    """Untrusted text (file names, manifest fields) made safe for one terminal line: control
    characters, newlines included, become visible escapes, so an error stays one line and a file
    name cannot move the cursor or recolour the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def one_line(exc: BaseException | str) -> str:
    """The first non-blank line of an exception's message (or of a text), else the exception's
    type name: what a library error (onnxruntime, Pillow, the Hub, Ray) says, fit for one line."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
