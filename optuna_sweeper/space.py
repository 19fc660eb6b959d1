"""hydra.sweeper.params -> Optuna distributions, parsed with Hydra's own override parser, and back to overrides.

Syntax (as the Hydra Optuna sweeper documents it): choice(a, b, ...) and a,b,... -> categorical;
range(start, stop[, step]) -> int/float with a step, stop excluded as in Python; interval(low, high) -> float;
int(interval(low, high)) -> int; tag(log, interval(...)) -> log scale; shuffle(range(...)) -> categorical; anything
else is a fixed override given to every trial.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from optuna_sweeper.errors import SweepError

SYNTAX_HELP = (
    "Write choice(a, b), range(start, stop[, step]), interval(low, high), int(interval(low, high)) or "
    "tag(log, interval(low, high)), or a plain value to fix it for every trial."
)


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> override value, the same for every trial


def parse_search_space(params: Mapping[str, Any], arguments: list[str]) -> SearchSpace:
    """Config params first, then the command line's arguments (which win for the same key)."""
    lines = [f"{key}={override_text(value)}" for key, value in params.items()] + list(arguments)
    space = SearchSpace()
    for line in lines:
        override = parse_line(line)
        key = line.split("=", 1)[0]  # as written, keeping a +/++/~ prefix for the override we hand back
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = to_distribution(override, line)
        else:
            space.fixed[key] = override.get_value_element_as_str()
    return space


def parse_line(line: str) -> Override:
    try:
        return OverridesParser.create().parse_override(line)
    except HydraException as exc:  # OverrideParseException, or a bad function call such as choice(null)
        raise SweepError(f"hydra.sweeper.params: cannot parse {line!r}: {exc}. {SYNTAX_HELP}") from None


def to_distribution(override: Override, line: str) -> BaseDistribution:
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return categorical(list(override.sweep_iterator(transformer=Transformer.identity)))
    if isinstance(value, RangeSweep):
        return stepped_range(value, line)
    if isinstance(value, IntervalSweep):
        return interval(value, line)
    raise SweepError(f"hydra.sweeper.params: {line!r} is a sweep Optuna cannot search. {SYNTAX_HELP}")


def categorical(choices: list[Any]) -> CategoricalDistribution:
    """Numbers, booleans and null stay themselves (readable in the leaderboard); anything else, strings, lists
    and dicts, is kept as its override text so that it goes back to Hydra exactly as written."""
    if all(choice is None or isinstance(choice, bool | int | float) for choice in choices):
        return CategoricalDistribution(choices)
    return CategoricalDistribution([Transformer.str(choice) for choice in choices])


def stepped_range(value: RangeSweep, line: str) -> BaseDistribution:
    start, stop, step = value.start, value.stop, value.step
    if step is None or step <= 0 or stop <= start:
        raise SweepError(f"hydra.sweeper.params: {line!r} must count upwards (start < stop, step > 0).")
    last = start + (math.ceil((stop - start) / step) - 1) * step  # stop is excluded, as in Python's range
    if all(isinstance(x, int) for x in (start, stop, step)):
        return IntDistribution(int(start), int(last), step=int(step))
    return FloatDistribution(float(start), round(float(last), 12), step=float(step))


def interval(value: IntervalSweep, line: str) -> BaseDistribution:
    low, high, log = value.start, value.end, "log" in value.tags
    if low is None or high is None or not low < high:
        raise SweepError(f"hydra.sweeper.params: {line!r} needs low < high.")
    if log and low <= 0:
        raise SweepError(f"hydra.sweeper.params: {line!r} is on a log scale, so its low end must be > 0.")
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def sample_overrides(trial: optuna.Trial, space: SearchSpace) -> list[str]:
    """The declared params only; the custom_search_space hook adds its own afterwards."""
    overrides = [f"{key}={value}" for key, value in space.fixed.items()]
    for name, distribution in space.distributions.items():
        overrides.append(f"{name}={override_text(suggest(trial, name, distribution))}")
    return overrides


def override_text(value: Any) -> str:
    """A value as the right-hand side of an override. Strings are taken as override text already (YAML params
    and categorical choices, see categorical()); numbers, booleans, null, lists and dicts are written out."""
    return value if isinstance(value, str) else Transformer.str(value)


def override_key(override: str) -> str:
    """`++optuna.x=1` -> `optuna.x`: the key an override sets, without Hydra's +, ++ or ~ prefix."""
    return override.partition("=")[0].lstrip("+~")


def first_value(distribution: BaseDistribution) -> Any:
    """A value the distribution allows, to compose a probe config before any trial is asked for."""
    return distribution.choices[0] if isinstance(distribution, CategoricalDistribution) else distribution.low


def encode_param(distribution: BaseDistribution, value: Any) -> Any:
    """A value as a user writes it (e.g. in warm_start) -> the form the distribution stores."""
    if isinstance(distribution, CategoricalDistribution) and any(isinstance(c, str) for c in distribution.choices):
        return Transformer.str(value)
    return value


def grid_of(space: SearchSpace) -> dict[str, list[Any]]:
    """GridSampler's search space: every choice, every step of a range; an interval has no grid."""
    grid: dict[str, list[Any]] = {}
    for name, distribution in space.distributions.items():
        if isinstance(distribution, CategoricalDistribution):
            grid[name] = list(distribution.choices)
        elif distribution.step is not None and not distribution.log:
            count = round((distribution.high - distribution.low) / distribution.step) + 1
            grid[name] = [distribution.low + i * distribution.step for i in range(count)]
        else:
            raise SweepError(
                f"The grid sampler needs a finite set of values, but hydra.sweeper.params.{name} is a continuous "
                f"interval. Use choice(...) or range(start, stop, step) for it, or another sampler."
            )
    return grid


def describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return "choice(" + ", ".join(map(str, distribution.choices)) + ")"
    scale = "log " if distribution.log else ""
    step = f" step {distribution.step}" if distribution.step is not None else ""
    return f"{scale}[{distribution.low}, {distribution.high}]{step}"
