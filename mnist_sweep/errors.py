"""Errors caused by what the user asked for (a bad override, missing data, a model over budget).

The entry point prints these as one paragraph and exits non-zero instead of showing a traceback."""


class UserError(Exception):
    """A problem the user can fix from the command line; the message says how."""


class DataError(UserError):
    pass


class BudgetError(UserError):
    pass


class DivergedError(UserError):
    """Training produced NaN or infinite numbers (in a sweep: this trial failed, the sweep goes on)."""
