"""A problem with how the sweep was asked for: printed as one paragraph, exit status 2, nothing recorded lost."""

MAX_MESSAGE_CHARS = 600  # a driver's error can run to pages; the first sentences say what went wrong


class SweepError(Exception):
    pass


def one_line(exc: BaseException) -> str:
    """An exception's message folded into one line that ends like a sentence, for a one-paragraph error."""
    text = " ".join(str(exc).split())[:MAX_MESSAGE_CHARS] or type(exc).__name__
    return text if text.endswith(".") else text + "."
