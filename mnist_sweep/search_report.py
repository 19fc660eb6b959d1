"""`python -m mnist_sweep.search_report DIR... [--png FILE]`: the README's table of models found by sweeps, and
the parameters-vs-test-accuracy plot with the seed models beside them.

Each DIR is the launch directory of one finished two-stage sweep. It is read, not re-run: the winner's stage-2
figures from the newest multirun/*/*/best_trial.yaml (mean ± sd over the finalist seeds, each run's test
evaluated once on its validation-chosen checkpoint), its budget and epochs from its stage-2 runs' composed config,
and, when present, the sweep's command (command.txt) and wall time (time.txt, from `/usr/bin/time -o time.txt`).
Seed models come from --seeds, a YAML list of {name, params, test_mean, test_sd, source}.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml
from omegaconf import OmegaConf


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="launch directories of finished sweeps")
    p.add_argument("--png", type=Path, help="write the parameters-vs-accuracy plot here")
    p.add_argument("--seeds", type=Path, help="YAML list of seed models to plot beside the found ones")
    return p.parse_args()


def newest(paths) -> Path | None:
    paths = sorted(paths, key=lambda p: p.stat().st_mtime)
    return paths[-1] if paths else None


def read_sweep(launch_dir: Path) -> dict:
    best_path = newest(launch_dir.glob("multirun/*/*/best_trial.yaml"))
    if best_path is None:
        raise SystemExit(f"{launch_dir}: no multirun/*/*/best_trial.yaml; is it the launch directory of a sweep?")
    best = yaml.safe_load(best_path.read_text())
    if "final" not in best:
        raise SystemExit(f"{best_path}: the winner has no stage-2 figures (a sweep with finalists.top_k=0?)")
    # Any sweep command of this launch directory: a re-run that found the study finished writes a new
    # best_trial.yaml in its own multirun directory, but the stage-2 runs it reports were composed by the first.
    config_path = newest(launch_dir.glob("multirun/*/*/final_*/.hydra/config.yaml"))
    cfg = OmegaConf.load(config_path) if config_path else OmegaConf.create({})
    time_path = launch_dir / "time.txt"
    command_path = launch_dir / "command.txt"
    return {
        "dir": launch_dir,
        "study": best["study"],
        "trial": best["trial"],
        "n_params": best["n_params"],
        "final": best["final"],
        "seeds": best.get("seeds", []),
        "budget": OmegaConf.select(cfg, "budget.max_params"),
        "dataset": OmegaConf.select(cfg, "dataset.name"),
        "epochs": OmegaConf.select(cfg, "trainer.epochs"),
        "command": sweep_command(command_path.read_text()) if command_path.exists() else "",
        "wall_s": wall_seconds(time_path.read_text()) if time_path.exists() else None,
    }


def sweep_command(text: str) -> str:
    """command.txt's command, without a trailing shell comment (a note of the code and environment it ran with)."""
    return re.sub(r"\s+#.*$", "", text.strip().splitlines()[0]) if text.strip() else ""


def wall_seconds(text: str) -> float | None:
    """The wall time GNU time wrote: `-v` ("Elapsed (wall clock) time (h:mm:ss or m:ss): 14:38.13") or `-f "%e s"`."""
    verbose = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if verbose:
        seconds = 0.0
        for part in verbose.group(1).split(":"):
            seconds = 60 * seconds + float(part)
        return seconds
    plain = re.search(r"([\d.]+) s\b", text)
    return float(plain.group(1)) if plain else None


def pct(stat: dict | None) -> str:
    return "—" if stat is None else f"{100 * stat['mean']:.2f} ± {100 * stat['sd']:.2f} %"


def row(s: dict) -> str:
    final = s["final"]
    macs = final.get("macs", {}).get("mean")
    seconds = final.get("epoch_seconds", {})
    wall = f"{s['wall_s'] / 60:.1f} min" if s["wall_s"] else "—"
    return (
        f"| {s['dataset']} | {s['budget']:,} | {s['n_params']:,} | {f'{macs:,.0f}' if macs else '—'} | "
        f"**{pct(final.get('test_acc'))}** | {pct(final.get('val_acc'))} | {s['epochs']} | "
        f"{seconds.get('mean', float('nan')):.1f} ± {seconds.get('sd', float('nan')):.1f} | "
        f"{', '.join(map(str, s['seeds']))} | `{s['command']}` | {wall} |"
    )


HEADER = (
    "| dataset | budget | params | MACs/image | test (mean ± sd) | val (mean ± sd) | epochs | train s/epoch (1 thread) "
    "| seeds | sweep command | sweep wall |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"
)


def plot(sweeps: list[dict], seeds: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for s in sweeps:
        test = s["final"]["test_acc"]
        ax.errorbar(s["n_params"], 100 * test["mean"], yerr=100 * test["sd"], fmt="o", color="tab:blue", capsize=3)
        ax.annotate(
            f"≤ {s['budget']:,}",
            (s["n_params"], 100 * test["mean"]),
            fontsize=8,
            xytext=(-52, 4),
            textcoords="offset points",
        )
    for seed in seeds:
        measured = seed.get("test_sd") is not None
        ax.errorbar(
            seed["params"],
            seed["test_mean"],
            yerr=seed.get("test_sd") or 0,
            capsize=3,
            fmt="s" if measured else "x",
            color="tab:orange" if measured else "tab:gray",
        )
        ax.annotate(
            seed["name"], (seed["params"], seed["test_mean"]), fontsize=8, xytext=(6, -12), textcoords="offset points"
        )
    handles = [
        plt.Line2D([], [], color="tab:blue", marker="o", ls="", label="found by a sweep (budget), 3 seeds"),
        plt.Line2D([], [], color="tab:orange", marker="s", ls="", label="seed model, measured here, 3 seeds"),
        plt.Line2D([], [], color="tab:gray", marker="x", ls="", label="seed model, its README's one run"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.axhline(99.4, color="gray", lw=0.5, ls="--")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy, % (mean ± sd over 3 seeds)")
    ax.set_title("MNIST: found by the two-stage sweep vs the seed models", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    sweeps = [read_sweep(d) for d in args.dirs]
    print(HEADER)
    for s in sorted(sweeps, key=lambda s: (s["dataset"] or "", s["budget"] or 0)):
        print(row(s))
    if args.png:
        seeds = yaml.safe_load(args.seeds.read_text()) if args.seeds else []
        plot([s for s in sweeps if s["dataset"] == "mnist"], seeds, args.png)
        print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
