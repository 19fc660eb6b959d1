"""Retrain finished runs (a sweep's stage-2 finalists, say) as they ran, with extra overrides, and set their
validation and test accuracy beside the originals': how the README measured test-time views on three sweeps'
finalists ("Found by search", "Test-time views for digits").

Each job is the Hydra job directory of a finished run (its .hydra/overrides.yaml and log). The sweep's bookkeeping
overrides (optuna, tracking, hparams_search) are dropped; the trial's architecture and recipe and the finalists'
overrides are kept, so at one thread the training draws the same numbers as the original run. Runs go two at a time
(each one thread, as a sweep's workers train) into --out: its own MLflow store, jobs/<tag>-<job>, and each run's
output in logs/<tag>-<job>.log. Then a table: per net (the runs whose overrides differ only in the seed), mean ± sd
of validation and test, before and after.

    python docs/measurements/rerun_finalists.py --out runs/tta --tag 4k <sweep>/multirun/*/*/final_* \\
        -- 'trainer.tta_rotations=[-7,-3.5,3.5,7]' trainer.tta_shift=1
    python docs/measurements/rerun_finalists.py --out runs/tta --tag 4k <sweep>/multirun/*/*/final_* --report
"""

import argparse
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

BOOKKEEPING = ("++optuna", "tracking.", "++tracking", "+hparams_search")


def kept_overrides(job: Path) -> list[str]:
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    return [o for o in overrides if not o.startswith(BOOKKEEPING)]


def rerun(job: Path, name: str, out: Path, extra: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "mnist_sweep",
        *kept_overrides(job),
        *extra,
        f"tracking.tracking_uri=sqlite:///{out.resolve()}/mlflow.db",
        f"tracking.run_name={name}",
        f"hydra.run.dir={out.resolve()}/jobs/{name}",
    ]
    with open(out / "logs" / f"{name}.log", "w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=out)
    print(f"{name}: exit {code}", flush=True)
    return code


def accuracies(logs: list[Path]) -> tuple[float, float] | None:
    """Best validation and test accuracy (%) from the run's summary box (a sweep's finalist writes it to its Hydra
    job log, a single run to its output), or None if it did not finish."""
    for log in logs:
        text = log.read_text()
        val = re.search(r"best val accuracy\s*:\s*([\d.]+)%", text)
        test = re.search(r"test accuracy\s*:\s*([\d.]+)%", text)
        if val and test:
            return float(val.group(1)), float(test.group(1))
    return None


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f} % ({', '.join(f'{v:.2f}' for v in values)})"


def report(jobs: list[Path], names: list[str], out: Path) -> None:
    nets: dict[tuple[str, ...], list[tuple[Path, str]]] = {}
    for job, name in zip(jobs, names, strict=True):
        net = tuple(o for o in kept_overrides(job) if not o.startswith("seed="))
        nets.setdefault(net, []).append((job, name))
    print("| net (first run) | runs | val before | test before | val after | test after |")
    print("|---|---:|---:|---:|---:|---:|")
    for runs in nets.values():
        before = [accuracies(list(job.glob("*.log"))) for job, _ in runs]
        after = [accuracies([out / "logs" / f"{name}.log"]) for _, name in runs]
        if None in before or None in after:
            print(f"| {runs[0][1]} | {len(runs)} | not all finished | | | |")
            continue
        columns = [mean_sd([a[i] for a in accs]) for accs in (before, after) for i in (0, 1)]
        print(f"| {runs[0][1]} | {len(runs)} | " + " | ".join(columns) + " |")


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("jobs", nargs="+", type=Path, help="Hydra job directories of finished runs")
parser.add_argument("--out", type=Path, required=True, help="where the reruns go (created)")
parser.add_argument("--tag", default="rerun", help="prefix of the reruns' names: <tag>-<job dir name>")
parser.add_argument("--report", action="store_true", help="only print the table of runs already in --out")
parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2, one thread each)")
argv = sys.argv[1:]
cut = argv.index("--") if "--" in argv else len(argv)  # the overrides after "--" go to every rerun
args, extra = parser.parse_args(argv[:cut]), argv[cut + 1 :]
names = [f"{args.tag}-{job.name}" for job in args.jobs]
if not args.report:
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        codes = list(pool.map(lambda jn: rerun(*jn, args.out, extra), zip(args.jobs, names, strict=True)))
    if any(codes):
        sys.exit(f"{sum(c != 0 for c in codes)} of {len(codes)} reruns failed: see {args.out}/logs")
report(args.jobs, names, args.out)
