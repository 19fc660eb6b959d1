"""Errors of the sweep: a problem with how the sweep was asked for (SweepError: printed as one paragraph, exit status 2,
nothing recorded lost), and how to read an exception a job returned."""

MAX_MESSAGE_CHARS = 600  # a driver's error can run to pages; the first sentences say what went wrong


class SweepError(Exception):
    pass


def one_line(exc: BaseException) -> str:
    """An exception's message folded into one line that ends like a sentence, for a one-paragraph error."""
    text = " ".join(str(exc).split())[:MAX_MESSAGE_CHARS] or type(exc).__name__
    return text if text.endswith(".") else text + "."


def raised_while_interrupted(exc: BaseException | None) -> bool:
    """Ctrl-C that landed inside library code cleaning up after it comes back as another error: Optuna's journal lock
    release, interrupted, raises FileNotFoundError from its own `except BaseException`, and Hydra's run_job then
    returns that as the job's failure. The KeyboardInterrupt is still in the exception's context: it is an
    interrupt, not a failed trial."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
