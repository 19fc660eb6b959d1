"""The README's found-models table is read from sweep launch directories: the winner's stage-2 figures, its budget
and epochs from a stage-2 run's composed config, the sweep's command and its wall time from GNU time's output."""

from __future__ import annotations

import pytest
import yaml

from mnist_sweep.search_report import read_sweep, row, wall_seconds


def test_a_sweep_row_carries_the_winner_figures_command_and_wall_time(tmp_path):
    sweep_dir = tmp_path / "multirun" / "2026-11-30" / "02-04-53"
    (sweep_dir / "final_3" / ".hydra").mkdir(parents=True)
    stat = lambda mean, sd: {"mean": mean, "sd": sd}  # noqa: E731
    best = {
        "study": "s",
        "trial": 24,
        "n_params": 5202,
        "seeds": [2, 3, 4],
        "final": {
            "test_acc": stat(0.99203, 0.00099),
            "val_acc": stat(0.9901, 0.0009),
            "macs": stat(541020, 0),
            "epoch_seconds": stat(7.44, 0.1),
        },
    }
    (sweep_dir / "best_trial.yaml").write_text(yaml.safe_dump(best))
    config = {"budget": {"max_params": 6000}, "dataset": {"name": "mnist"}, "trainer": {"epochs": 15}}
    (sweep_dir / "final_3" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    # A note after the command (the code and environment it ran with) is not part of the command.
    (tmp_path / "command.txt").write_text("python -m mnist_sweep -m hydra/sweeper=optuna   # code 4497cd9\n")
    (tmp_path / "time.txt").write_text("\tElapsed (wall clock) time (h:mm:ss or m:ss): 14:38.13\n")

    line = row(read_sweep(tmp_path))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:8] == [
        "mnist",
        "6,000",
        "5,202",
        "541,020",
        "**99.20 ± 0.10 %**",
        "99.01 ± 0.09 %",
        "15",
        "7.4 ± 0.1",
    ]
    assert cells[8:] == ["2, 3, 4", "`python -m mnist_sweep -m hydra/sweeper=optuna`", "14.6 min"]

    # The same command run again on the finished study writes its own best_trial.yaml, with no stage-2 runs beside
    # it: the budget and epochs still come from the runs the first command composed.
    again = tmp_path / "multirun" / "2026-11-30" / "03-10-00"
    again.mkdir(parents=True)
    (again / "best_trial.yaml").write_text(yaml.safe_dump(best))
    assert row(read_sweep(tmp_path)) == line


def test_gnu_time_formats_and_a_dir_that_is_no_sweep(tmp_path):
    assert wall_seconds("Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5") == 3723.5
    assert wall_seconds("912.3 s") == 912.3 and wall_seconds("no time here") is None
    with pytest.raises(SystemExit, match="no multirun"):
        read_sweep(tmp_path)
