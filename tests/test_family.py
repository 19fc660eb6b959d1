"""The search family (mnist_sweep.family) and its define-by-run space (mnist_sweep.search_space): both seeds the
search starts from are members layer for layer, every sampled architecture builds, and a knob is sampled only
when its layer exists."""

from __future__ import annotations

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from mnist_sweep.family import build_family
from mnist_sweep.models import count_parameters
from mnist_sweep.search_space import (
    FOCUSED,
    WIDE,
    WIDTH_PARAM,
    family_space,
    fit_to_budget,
    fits,
    focused_space,
    wide_space,
    width_range,
)
from mnist_sweep.train import build_model
from mnist_sweep.trial import model_size

from .helpers import CONF, compose_config

SEEDS = {"gap8k": ("family", 7788), "pool7k": ("family_pool7k", 6790)}


def layers(model: torch.nn.Module) -> list[tuple[str, tuple]]:
    """Every module's type and every parameter's shape, in order: two nets with equal lists are the same net."""
    kinds = [type(m).__name__ for m in model.modules() if not list(m.children())]
    return kinds + [tuple(p.shape) for p in model.parameters()]


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_each_seed_is_a_member_of_the_family_layer_for_layer(seed):
    member, count = SEEDS[seed]
    as_family = build_model(compose_config(f"model={member}").model)
    original = build_model(compose_config(f"model={seed}").model)
    assert count_parameters(as_family) == count_parameters(original) == count
    assert layers(as_family) == layers(original)
    assert as_family(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def warm_start_entries() -> list[dict]:
    search = OmegaConf.load(CONF / "hparams_search" / "mnist_family.yaml")
    return OmegaConf.to_container(search.hydra.sweeper.warm_start)


@pytest.mark.parametrize("space", [focused_space, family_space])
@pytest.mark.parametrize("index,seed", [(0, "gap8k"), (1, "pool7k")])
def test_the_warm_start_is_each_seed_exactly(index, seed, space):
    """The space's warm-start entries, replayed through the define-by-run function, build the seeds themselves."""
    study = optuna.create_study(direction="maximize")
    entry = {k: v for k, v in warm_start_entries()[index].items() if "." not in k or k.startswith(("s", "final."))}
    architecture = {k: v for k, v in entry.items() if not k.startswith(("optimizer.", "trainer.", "augmentation"))}
    study.enqueue_trial(architecture)
    trial = study.ask()
    overrides = space(None, trial)
    assert not set(trial.params) - set(architecture), "the seed's entry must fix every knob its architecture uses"
    cfg = compose_config("model=family")
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    net = build_model(cfg.model)
    # gap8k's entry is experiment=fast's gap8k: dropout off
    seed_model = compose_config(f"model={seed}", f"model.dropout={entry.get('dropout', 0.0)}").model
    assert layers(net) == layers(build_model(seed_model))


@pytest.mark.parametrize("max_params", [2000, 4000, 6789, 8000])
def test_a_seed_over_the_budget_is_fitted_to_it_by_scaling_its_widths(max_params):
    """fit_to_budget, the default search's warm_start_adapter: a seed over the budget keeps its layout, head and
    recipe, with its widths scaled down (inside the sized range) until it fits. (gap8k at 8,000 fits, and no factor
    grows it within the budget: it is queued as written.)"""
    budget = (f"budget.max_params={max_params}", "budget.max_macs=1000000")
    width = width_range(FOCUSED, max_params)
    for entry, seed in zip(warm_start_entries(), ("family", "family_pool7k"), strict=True):
        fitted = fit_to_budget(compose_config("model=family", *budget), entry)
        n_params, macs = size_of(fitted, budget)
        assert n_params <= max_params and macs <= 1_000_000
        seed_params, _, seed_sizes = model_size(compose_config(f"model={seed}", *budget))
        if seed_params <= max_params and seed_sizes["macs"][0] <= 1_000_000:
            assert fitted == entry  # gap8k at 8,000
            continue
        assert not_widths(fitted) == not_widths(entry)
        assert all(width["low"] <= v <= width["high"] and v % 2 == 0 for k, v in fitted.items() if WIDTH_PARAM.match(k))
        # The budget is filled: no width can take one more step (up to the seed's own width) and still fit.
        cfg = compose_config("model=family", *budget)
        for key in filter(WIDTH_PARAM.match, fitted):
            if fitted[key] + 2 <= min(width["high"], entry[key]):
                assert not fits(cfg, {**fitted, key: fitted[key] + 2}), f"{key} could still grow at {max_params}"


def test_a_seed_under_the_budget_is_grown_into_it():
    """At Fashion-MNIST's 20,000 parameters (4M MACs) the sized widths start at 12: both seeds (8-16 wide) are scaled
    up by one factor, inside the range, to the largest that fits, layout, head and recipe kept. Queued as written,
    they sat outside the space (Optuna warned of every width) and stage 2's baseline had 7,788 parameters."""
    budget = ("budget.max_params=20000", "budget.max_macs=4000000")
    cfg = compose_config("model=family", *budget)
    width = width_range(FOCUSED, 20000)
    for entry in warm_start_entries():
        grown = fit_to_budget(cfg, entry)
        assert not_widths(grown) == not_widths(entry)
        widths = {k: v for k, v in grown.items() if WIDTH_PARAM.match(k)}
        assert all(width["low"] <= v <= width["high"] and v >= entry[k] for k, v in widths.items())
        n_params, macs = size_of(grown, budget)
        assert size_of(entry, budget)[0] < 10_000 < n_params <= 20_000 and macs <= 4_000_000
    # Without budget.max_params there is nothing to grow into: as written.
    unbounded = compose_config("model=family", "budget.max_params=null")
    assert fit_to_budget(unbounded, warm_start_entries()[0]) == warm_start_entries()[0]


def test_the_wide_space_reaches_the_hand_typed_fashion_widths():
    """wide_space: FOCUSED's choices with its widths sized to half the budget, so at 20,000 parameters it draws the
    16-32 channels of experiment=fashion18k (16-16 / 24-24 / 32), where focused_space stops at 24. Both stay on the
    width grid, the widest no wider than the budget allows and the narrowest half of it."""
    hand_widths = [16, 16, 24, 24, 32]
    wide, focused = width_range(WIDE, 20000), width_range(FOCUSED, 20000)
    assert wide == {"low": 16, "high": 32, "step": 2} and focused == {"low": 12, "high": 24, "step": 2}
    assert all(wide["low"] <= w <= wide["high"] for w in hand_widths) and max(hand_widths) > focused["high"]
    for max_params in (2000, 4000, 8000, 20000):
        width = width_range(WIDE, max_params)
        assert 9 * width["high"] ** 2 <= max_params / 2 and width["low"] == 2 * (width["high"] // 4)
        assert width_range(FOCUSED, max_params)["high"] <= width["high"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cfg = compose_config("model=family", "budget.max_params=20000")
    for _ in range(20):
        overrides = wide_space(cfg, study.ask())
        widths = [
            w for s in overrides["model.stages"] for w in s["widths"] + ([s["squeeze"]] if "squeeze" in s else [])
        ]
        assert all(16 <= w <= 32 or w == 10 for w in widths)  # 10: gap_direct's fixed last width, one per class


def test_a_seed_that_leaves_knobs_to_the_sampler_is_queued_as_written():
    """Its size is unknown until the sampler draws the rest: fit_to_budget cannot count it, so it leaves it alone."""
    partial = {k: v for k, v in warm_start_entries()[0].items() if k != "head"}
    assert fit_to_budget(compose_config("model=family", "budget.max_params=2000"), partial) == partial


@pytest.mark.parametrize("rate", [0.0, 0.001, 0.1])
def test_an_entry_written_before_the_dropout_switch_is_queued_with_it(rate):
    """A warm-start entry of the space before commit 72e06b4 names `dropout` without `dropout_on`: its switch follows
    from the rate (off where the rate drops nothing), so it is fitted and runs as written, not with the switch left
    to the sampler."""
    cfg = compose_config("model=family", "budget.max_params=4000", "budget.max_macs=1000000")
    current = warm_start_entries()[1]  # pool7k: dropout 0.1 after the pools
    legacy = {k: v for k, v in current.items() if k != "dropout_on"} | {"dropout": rate}
    fitted = fit_to_budget(cfg, legacy)
    if rate == 0.1:
        assert fitted == fit_to_budget(cfg, current)
    else:
        assert fitted["dropout_on"] is False and "dropout" not in fitted and "dropout_at" not in fitted
        assert not_widths(fitted) | {"dropout_on": True, "dropout": 0.1, "dropout_at": "pool"} == not_widths(
            fit_to_budget(cfg, current)
        )


def not_widths(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not WIDTH_PARAM.match(k)}


def size_of(entry: dict, budget: tuple[str, ...]) -> tuple[int, int]:
    """The net a warm-start entry builds through the default space, counted as the sweeper counts a trial."""
    study = optuna.create_study()
    study.enqueue_trial(entry)
    cfg = compose_config("model=family", *budget)
    for key, value in focused_space(cfg, study.ask()).items():
        OmegaConf.update(cfg, key, value, merge=False)
    n_params, _, sizes = model_size(cfg)
    return n_params, sizes["macs"][0]


@pytest.mark.parametrize("space", [focused_space, wide_space, family_space])
def test_every_sampled_architecture_builds_and_asks_only_for_the_knobs_it_uses(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(300):
        trial = study.ask()
        o = space(None, trial)
        if space in (focused_space, wide_space):  # the default search never leaves its choices
            assert o["model.order"] in FOCUSED.orders and o["model.separable"] in FOCUSED.separable
            assert all(s["after"] in FOCUSED.after for s in o["model.stages"][:-1])
        net = build_family(
            o["model.stages"],
            padding=o["model.padding"],
            order=o["model.order"],
            bias=o["model.bias"],
            dropout=o["model.dropout"],
            dropout_at=o["model.dropout_at"],
            squeeze_act=o["model.squeeze_act"],
            separable=o["model.separable"],
            head=o["model.head"],
        )
        assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
        stages = o["model.stages"]
        n = len(stages)
        # Knobs of stages the net does not have are never sampled; nor a squeeze width without a squeeze.
        assert not [k for k in trial.params if k.startswith(tuple(f"s{i}." for i in range(n + 1, 6)))]
        for i, stage in enumerate(stages, 1):
            assert (f"s{i}.squeeze" in trial.params) == (
                stage["after"].startswith("squeeze") and not (i == n and o["model.head"] == "gap_direct")
            )
            assert not [
                k for k in trial.params if k.startswith(f"s{i}.w") and int(k[len(f"s{i}.w") :]) > len(stage["widths"])
            ]
        assert ("squeeze_act" in trial.params) == any(s["after"].startswith("squeeze") for s in stages)
        # The rate and its place only when dropout is on; on, it drops at least 5 activations in 256.
        assert ("dropout" in trial.params) == ("dropout_at" in trial.params) == trial.params["dropout_on"]
        assert (o["model.dropout"] >= 0.02) == trial.params["dropout_on"] == (o["model.dropout"] > 0)
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    "knobs,problem",
    [
        ({"stages": []}, "family stages must list 1 to"),
        ({"stages": [{"widths": []}]}, "needs widths"),
        ({"stages": [{"widths": [8], "after": "zigzag"}]}, "after must be one of"),
        ({"stages": [{"widths": [8], "after": "squeeze"}]}, "needs squeeze"),
        ({"stages": [{"widths": [8]}], "head": "gap_direct"}, "must end with 10 channels"),
        ({"stages": [{"widths": [8]}], "dropout_at": "everywhere"}, "dropout_at must be one of"),
    ],
)
def test_a_bad_family_knob_is_refused_with_its_name(knobs, problem):
    with pytest.raises(ValueError, match=problem):
        build_family(**knobs)


def test_stride2_and_separable_convs_shrink_the_map_and_the_weights():
    plain = build_family([{"widths": [8, 16], "after": "pool"}, {"widths": [16, 16]}], padding=1)
    strided = build_family([{"widths": [8, 16], "after": "stride2"}, {"widths": [16, 16]}], padding=1)
    separable = build_family([{"widths": [8, 16], "after": "pool"}, {"widths": [16, 16]}], padding=1, separable=True)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())
    assert any(getattr(m, "stride", None) == (2, 2) for m in strided.modules())
    assert count_parameters(strided) == count_parameters(plain)
    assert count_parameters(separable) < count_parameters(plain) / 3


def test_a_family_net_with_a_crop_keeps_its_maps_at_least_6x6_and_looks_only_at_the_centre():
    """crop=24: gap8k's stages on the central 24x24 (24 -> 22 -> 20, pool 10 -> 8 -> 6, then padded convs at 6x6):
    the same weights as on the whole image, fewer multiply-adds, and nothing outside the crop reaches the logits."""
    from mnist_sweep.train import measure

    whole = build_model(compose_config("model=family", "model.dropout=0").model).eval()
    cropped = build_model(compose_config("model=family", "model.dropout=0", "model.crop=24").model).eval()
    assert count_parameters(cropped) == count_parameters(whole) == 7788
    # 554,964 multiply-adds against 747,668
    assert measure(cropped, "cropped").total_mult_adds < 0.75 * measure(whole, "whole").total_mult_adds
    shapes = []
    cropped[-2].register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape[-2:])))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        logits = cropped(x)
        x[..., :, :2] = 9.0
        assert torch.equal(cropped(x), logits)
    assert shapes[0] == (6, 6)  # the last conv block's map
