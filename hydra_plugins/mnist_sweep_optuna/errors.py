"""A problem with how the sweep was asked for: printed as one paragraph, exit status 2, nothing recorded lost."""


class SweepError(Exception):
    pass
