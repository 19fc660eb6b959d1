"""Errors caused by what the user asked for (a bad override, missing data, a model over budget).

The entry point prints these as one paragraph and exits non-zero instead of showing a traceback; so do the
measuring tools (mnist_sweep.bench, mnist_sweep.profile), through refused_in_one_paragraph. Their integer flags
(and calibrate's) refuse an out-of-range number at parse time, in argparse's one line, through at_least."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException


class UserError(Exception):
    """A problem the user can fix from the command line; the message says how."""


class DataError(UserError):
    pass


class BudgetError(UserError):
    pass


class DivergedError(UserError):
    """Training produced NaN or infinite numbers (in a sweep: this trial failed, the sweep goes on)."""


@contextmanager
def refused_in_one_paragraph(tool: str, overrides: list[str]) -> Iterator[None]:
    """A command-line tool's bad input (an override Hydra cannot compose, a value out of range, missing data) as
    one paragraph on stderr and exit status 2, as `python -m mnist_sweep` answers it, instead of a traceback."""
    try:
        yield
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"{tool}: error: the overrides {' '.join(overrides)} do not make a config: {exc}", file=sys.stderr)
        sys.exit(2)
    except UserError as exc:
        print(f"{tool}: error: {exc}", file=sys.stderr)
        sys.exit(2)


def at_least(minimum: int):
    """An argparse type: an integer no smaller than minimum (argparse then answers a bad value in one line)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse
