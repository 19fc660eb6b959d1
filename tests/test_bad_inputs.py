"""Every bad input, single runs and sweeps alike: a non-zero exit, no traceback, a message that names the key (one
paragraph from this project, or Hydra's own for a type, key or option Hydra refuses), and nothing half-written: no
MLflow run and no Optuna trial recorded."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .helpers import run_cli

pytestmark = pytest.mark.slow  # each case is a subprocess (1-5 s); they run a few at a time (`refusals`)

SWEEP = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2"]

# (arguments, what the message must say); DATA is replaced by a folder prepared for the case.
CASES = {
    # config values, range-checked before torch is imported
    "epochs": (["trainer.epochs=0"], "trainer.epochs must be at least 1"),
    "batch size": (["trainer.batch_size=0"], "trainer.batch_size must be at least 1"),
    "epoch fraction": (["trainer.epoch_fraction=0"], "trainer.epoch_fraction must be in (0, 1]"),
    "eval batch size": (["trainer.eval_batch_size=-1"], "trainer.eval_batch_size must be at least 1"),
    "label smoothing": (["trainer.label_smoothing=1.5"], "trainer.label_smoothing must be in [0, 1)"),
    "l1": (["trainer.l1_weight=-1"], "trainer.l1_weight must be >= 0"),
    "grad clip": (["trainer.grad_clip=0"], "trainer.grad_clip must be > 0"),
    "patience": (["trainer.patience=0"], "trainer.patience must be >= 1"),
    "threads": (["trainer.num_threads=0"], "trainer.num_threads must be >= 1"),
    "device name": (["trainer.device=tpu"], "trainer.device must be auto, cpu"),
    "ema": (["trainer.ema_decay=1.5"], "trainer.ema_decay must be in (0, 1)"),
    "distill weight": (["trainer.distill_weight=0"], "trainer.distill_weight must be in (0, 1]"),
    "teacher": (["trainer.teacher=runs:/0123456789abcdef/model"], "is not a model this MLflow store can load"),
    "amp": (["trainer.amp=fp8"], "trainer.amp must be one of"),
    "tta rotation 0": (["trainer.tta_rotations=[-7,0,7]"], "trainer.tta_rotations must be angles in degrees"),
    "tta rotation range": (["trainer.tta_rotations=[270]"], "within [-180, 180], none of them 0"),
    "tta shift": (["trainer.tta_shift=5"], "trainer.tta_shift must be 0 (off) to 4 pixels"),
    "dropout": (["model.dropout=1.0"], "model.dropout must be in [0, 1)"),
    "budget zero": (["budget.max_params=0"], "budget.max_params must be a positive number"),
    "lr": (["optimizer.lr=-0.1"], "optimizer.lr must be > 0"),
    "scheduler interval": (["scheduler.interval=week"], "scheduler.interval must be batch or epoch"),
    # types and keys: Hydra's own message
    "int type": (["trainer.epochs=abc"], "trainer.epochs"),
    "float for int": (["trainer.batch_size=1.5"], "trainer.batch_size"),
    "seed type": (["seed=x"], "seed"),
    "bool type": (["trainer.keep_best=maybe"], "trainer.keep_best"),
    "unknown key": (["nosuchkey=1"], "nosuchkey"),
    "unknown nested key": (["+trainer.nosuch=1"], "trainer.nosuch is not a setting"),
    "unknown top-level key": (["+nosuch=1"], "nosuch is not a setting"),
    # group options
    "model option": (["model=nosuch"], "model/nosuch"),
    "optimizer option": (["optimizer=nosuch"], "optimizer/nosuch"),
    "scheduler option": (["scheduler=nosuch"], "scheduler/nosuch"),
    "augmentation option": (["augmentation=nosuch"], "augmentation/nosuch"),
    "dataset option": (["dataset=nosuch"], "dataset/nosuch"),
    "experiment option": (["experiment=nosuch"], "experiment/nosuch"),
    # models and the budget
    "over budget": (["budget.max_params=5000"], "over budget.max_params=5,000"),
    "family stages": (["model=family", "model.stages=[]"], "family stages must list 1 to"),
    "crop too large": (["model.net.crop=30"], "crop must be 1 to 28 pixels"),
    "crop too small": (["model.net.crop=10"], "cannot take a 28x28 image"),
    "family after": (["model=family", "model.stages=[{widths:[8],after:zigzag}]"], "after must be one of"),
    "family width": (["model=family", "model.stages=[{widths:[0]}]"], "needs widths, a list of positive"),
    "family head": (["model=family", "model.head=none"], "family head must be one of"),
    "augmentation value": (["augmentation=affine", "augmentation.steps.0.degrees=-3"], "augmentation"),
    # data
    "no data": (["dataset.root=/nonexistent", "dataset.download=false"], "mnist files not found"),
    "val size": (["dataset.val_size=0"], "dataset.val_size must be between"),
    "train limit": (["dataset.train_limit=0"], "dataset.train_limit must be a positive number"),
    "changed file": (["dataset.root=DATA", "dataset.download=false"], "not the canonical file"),
    "truncated extracted file": (["dataset.root=DATA", "dataset.download=false"], "not a complete IDX file"),
    # devices, paths, servers
    "no cuda": (["trainer.device=cuda"], "torch sees no CUDA device"),
    "output dir": (["hydra.run.dir=/proc/no/such/dir"], "at a folder you can write, e.g. hydra.run.dir=outputs/my_run"),
    "tracking server": (["tracking.tracking_uri=http://127.0.0.1:9"], "does not answer"),
    # sweeps: refused before a study, a trial or an MLflow run exists
    "sweep workers": ([*SWEEP, "hydra.sweeper.n_workers=0"], "hydra.sweeper.n_workers must be 1 or more"),
    "sweep jobs": ([*SWEEP, "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs must be 1 or more"),
    "sweep trials": ([*SWEEP, "hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials must be 0 or more"),
    "sweep failure rate": ([*SWEEP, "hydra.sweeper.max_failure_rate=-1"], "max_failure_rate must be 0.0 or more"),
    "sweep command index": ([*SWEEP, "hydra.sweeper.command_index=-2"], "command_index must be 0 or more, got -2"),
    "sweep time limit": ([*SWEEP, "hydra.sweeper.stage_one_minutes=0"], "stage_one_minutes must be more than 0"),
    "sweep direction": ([*SWEEP, "hydra.sweeper.direction=up"], "hydra.sweeper.direction must be maximize"),
    "sweep sampler": ([*SWEEP, "hydra/sweeper/sampler=annealing"], "hydra/sweeper/sampler/annealing"),
    "sweep pruner": ([*SWEEP, "hydra/sweeper/pruner=nosuch"], "hydra/sweeper/pruner/nosuch"),
    "sweep sampler type": ([*SWEEP, "hydra.sweeper.sampler.seed=abc"], "seed"),
    "empty choice": ([*SWEEP, "model.ch1=choice()"], "model.ch1"),
    "interval order": ([*SWEEP, "model.dropout=interval(0.5, 0.1)"], "needs low < high"),
    "log of zero": ([*SWEEP, "optimizer.lr=tag(log, interval(0, 1))"], "log scale"),
    "unparsable": ([*SWEEP, "model.ch1=interval(0,"], "no viable alternative at input 'interval(0,'"),
    "unknown searched key": ([*SWEEP, "nosuch.key=choice(1,2)"], "Could not override 'nosuch.key'"),
    "storage scheme": ([*SWEEP, "hydra.sweeper.storage=nosuchdb://x/y"], "Cannot open the Optuna storage"),
    "storage server": (
        [*SWEEP, "hydra.sweeper.storage=postgresql://sweeper:s3cret@127.0.0.1:9/study"],
        "postgresql+psycopg://sweeper:***@127.0.0.1:9/study",
    ),
    "in-memory storage": ([*SWEEP, "hydra.sweeper.storage=sqlite:///:memory:"], "in-memory database"),
    "warm start key": ([*SWEEP, "hydra.sweeper.warm_start=[{nosuch: 1}]"], "hydra.sweeper.warm_start[0] sets"),
    "custom space": ([*SWEEP, "hydra.sweeper.custom_search_space=no.such.fn"], "custom_search_space='no.such.fn'"),
    "macs budget": (["model=gap8k", "budget.max_macs=1000"], "over budget.max_macs=1,000; it was not trained"),
    "macs budget sign": (["budget.max_macs=0"], "budget.max_macs must be a positive number or null"),
    "finalists top_k": ([*SWEEP, "hydra.sweeper.finalists.top_k=-1"], "hydra.sweeper.finalists.top_k must be 0"),
    "finalists seeds": ([*SWEEP, "hydra.sweeper.finalists.seeds=[]"], "hydra.sweeper.finalists.seeds is empty"),
    "finalists seed twice": ([*SWEEP, "hydra.sweeper.finalists.seeds=[2,2]"], "finalists.seeds repeats a seed"),
    "found recipe missing": (["experiment=found/nosuch"], "experiment/found/nosuch"),
    "param counter": ([*SWEEP, "hydra.sweeper.param_counter=no.such.fn"], "param_counter='no.such.fn'"),
    "sweep tracking server": ([*SWEEP, "tracking.tracking_uri=http://127.0.0.1:9"], "does not answer"),
    "sweep dir": ([*SWEEP, "hydra.sweep.dir=/proc/no/such/dir"], "hydra.sweep.dir=/proc/no/such/dir cannot"),
    # Hydra's flags, checked inside hydra.main (a bare ValueError there)
    "multirun and cfg": (["-m", "--cfg=job"], "drop -m: `python -m mnist_sweep --cfg job hydra/sweeper=optuna`"),
    "resolve alone": (["--resolve"], "Add --cfg job (or --cfg all)"),
}


def prepare_data(case: str, mnist_root: str, folder: Path) -> None:
    """A copy of the real MNIST files with one file changed (content) or extracted and truncated."""
    shutil.copytree(Path(mnist_root) / "MNIST" / "raw", folder)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    content = gzip.decompress(labels.read_bytes())
    if case == "changed file":
        labels.write_bytes(gzip.compress(content[:-1] + bytes([(content[-1] + 1) % 10])))
    else:
        labels.unlink()
        labels.with_suffix("").write_bytes(content[:-100])


def nothing_recorded(cwd: Path) -> None:
    if (cwd / "mlflow.db").exists():
        with sqlite3.connect(cwd / "mlflow.db") as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0
    assert not (cwd / "optuna_journal.log").exists() or "trial" not in (cwd / "optuna_journal.log").read_text()


def refuse(case: str, mnist_root: str, cwd: Path):
    """Run one case in its own empty directory, as a user would type it."""
    args, _ = CASES[case]
    if "DATA" in " ".join(args):
        prepare_data(case, mnist_root, cwd / "data")
        args = [a.replace("DATA", str(cwd / "data")) for a in args]
    env_root = [] if any(a.startswith("dataset.root") for a in args) else [f"dataset.root={mnist_root}"]
    flags = [a for a in args if a.startswith("-")]  # -m before the overrides, as argparse wants it
    overrides = ["trainer.epochs=1", "dataset.train_limit=500", *env_root, *(a for a in args if a not in flags)]
    try:
        return run_cli(*flags, *overrides, cwd=cwd, timeout=120)
    except subprocess.TimeoutExpired as exc:  # this case fails alone, the others still report
        return exc


@pytest.fixture(scope="module")
def refusals(request, tmp_path_factory, mnist_root) -> dict:
    """The process and directory of every case this pytest session selected (`-k` picks some), three cases at a
    time: a case is mostly one process importing Python modules on one core, and one at a time the 63 cases were
    the largest share of CI's time."""
    import torch

    selected = {
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    cases = [c for c in CASES if c in selected and not (c == "no cuda" and torch.cuda.is_available())]
    dirs = {case: tmp_path_factory.mktemp("case") for case in cases}
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(cases, pool.map(lambda c: refuse(c, mnist_root, dirs[c]), cases), strict=True))
    return {case: (done[case], dirs[case]) for case in cases}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly_and_records_nothing(case, refusals):
    if case not in refusals:
        pytest.skip("this machine has CUDA")
    done, cwd = refusals[case]
    expected = CASES[case][1]
    if isinstance(done, subprocess.TimeoutExpired):
        pytest.fail(f"no answer within {done.timeout:.0f} s: {done.cmd}")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert expected in done.stderr, done.stderr[-2000:]
    ours = [line for line in done.stderr.splitlines() if line.startswith(("mnist_sweep: error:", "optuna sweeper:"))]
    assert len(ours) <= 1  # one paragraph of ours, or Hydra's own message
    nothing_recorded(cwd)


def test_the_suite_covers_at_least_45_cases():
    assert len(CASES) >= 45
