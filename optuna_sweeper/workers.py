"""The extra worker processes of one sweep command (hydra.sweeper.n_workers > 1): copies of the command the user
typed, started by the sweeper. They join the same study through its storage, put their trial dirs in the same
sweep dir, and log to <sweep dir>/worker-<k>.log; the sweeper waits for them before its summary."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Transformer

from optuna_sweeper.errors import SweepError
from optuna_sweeper.settings import Resolved, worker_name
from optuna_sweeper.space import override_key

log = logging.getLogger(__name__)

# Ctrl-C in a terminal reaches the whole process group: the workers stop by themselves, so give them this long
# before passing the interrupt on (a signal sent to the sweeper alone, e.g. `kill -INT`, did not reach them).
INTERRUPT_GRACE_S = 5.0
# An interrupted worker marks its trial and exits within seconds; one still running after this is terminated.
STOP_TIMEOUT_S = 60.0
# How the command (or a worker's own orphan watch) tells a worker to stop as on Ctrl-C. Not SIGINT: a command started
# with SIGINT ignored (`nohup ... &` from a script, as long sweeps are started) passes SIG_IGN on to its workers, and
# Python then installs no handler for it, so they would run on after the command died. Nobody sends SIGUSR1 by
# accident, and each worker installs its handler itself (`listen_for_stop`), whatever it inherited.
STOP_SIGNAL = signal.SIGUSR1


@dataclass
class Worker:
    number: int
    process: subprocess.Popen
    log_path: Path

    @property
    def name(self) -> str:
        """As stored in the user attr `worker` of each trial it runs."""
        return worker_name(self.process.pid)


class WorkerPool:
    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.sigterm_installed = False
        self.previous_sigterm: Any = signal.SIG_DFL

    def start(self, count: int, sweep_dir: Path, overrides_for: Callable[[int], list[str]]) -> None:
        """Start workers 1..count, each with this command's arguments plus overrides_for(number)."""
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.pass_sigterm_on()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # so a worker's log shows its progress as it happens
        for number in range(1, count + 1):
            extra = overrides_for(number)
            command = this_command(replacing={override_key(o) for o in extra}) + extra
            log_path = sweep_dir / f"worker-{number}.log"
            with log_path.open("w") as out:
                # Same process group: Ctrl-C and a closed terminal reach the workers as they reach this process.
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            self.workers.append(Worker(number, process, log_path))
        logs = ", ".join(str(w.log_path) for w in self.workers)
        log.info(
            "Started %d more worker process(es) on this study (hydra.sweeper.n_workers=%d); their logs: %s",
            count,
            count + 1,
            logs,
        )

    def names(self) -> set[str]:
        return {w.name for w in self.workers}

    def wait(self) -> None:
        for worker in self.workers:
            worker.process.wait()

    def stop(self, grace_s: float) -> None:
        """The sweep ended early: interrupt the workers still running (they queue their trials again, like the
        sweeper), and terminate those that do not stop in time."""
        try:
            if self.wait_all(grace_s):
                return
            self.send(STOP_SIGNAL)
            if self.wait_all(STOP_TIMEOUT_S):
                return
            log.warning("Worker(s) still running %.0f s after being told to stop: terminating them", STOP_TIMEOUT_S)
            self.send(signal.SIGTERM)
            if not self.wait_all(5.0):
                self.send(signal.SIGKILL)
        finally:
            self.restore_sigterm()

    def failed(self) -> list[Worker]:
        return [w for w in self.workers if w.process.returncode not in (0, None)]

    def raise_if_any_failed(self) -> None:
        failed = self.failed()
        if failed:
            which = [
                f"worker {w.number} exited with status {w.process.returncode} (its log: {w.log_path})" for w in failed
            ]
            raise SweepError(
                f"{len(failed)} worker process(es) of this sweep failed: {'; '.join(which)}. Their finished trials "
                "are kept in the study; fix the cause and re-run to continue."
            )

    def wait_all(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def send(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    def pass_sigterm_on(self) -> None:
        """`kill` of the sweeper terminates its workers too, then ends the sweeper as SIGTERM always did."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread

        def terminate(signum, frame):
            self.send(signal.SIGTERM)
            self.restore_sigterm()
            os.kill(os.getpid(), signal.SIGTERM)

        self.previous_sigterm = signal.signal(signal.SIGTERM, terminate)
        self.sigterm_installed = True

    def restore_sigterm(self) -> None:
        if self.sigterm_installed:
            # None: a handler installed outside Python; the default is the closest we can restore.
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self.previous_sigterm is None else self.previous_sigterm)
            self.sigterm_installed = False


def worker_overrides(run: Resolved, passwordless: list[str], parent_run_id: str | None) -> Callable[[int], list[str]]:
    """What worker `number` adds to the command line: this command's study, sweep dir and deadline, as resolved
    here, and the MLflow sweep run its trial runs nest under (None: no MLflow)."""

    def overrides(number: int) -> list[str]:
        # The sweep dir as resolved here: in the worker, ${now:...} would give the worker's own start time.
        extra = [
            *passwordless,  # instead of the command line's URLs with a password (given in the env)
            "hydra.sweeper.n_workers=1",
            f"hydra.sweeper.worker_id={number}",
            f"hydra.sweeper.sweep_id={Transformer.str(run.sweep_id)}",
            f"hydra.sweep.dir={Transformer.str(str(run.sweep_dir))}",
            *([f"hydra.sweeper.stage_one_deadline={run.stage_one_deadline!r}"] if run.stage_one_deadline else []),
        ]
        return extra + ([f"hydra.sweeper.parent_run_id='{parent_run_id}'"] if parent_run_id else [])

    return overrides


def this_command(replacing: set[str]) -> list[str]:
    """How this process was started (the same interpreter, `-m package` or the script, the user's arguments),
    less the overrides of the keys in `replacing`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    entry = ["-m", spec.name.removesuffix(".__main__")] if spec else [sys.argv[0]]
    return [sys.executable, *entry, *(arg for arg in sys.argv[1:] if override_key(arg) not in replacing)]


def listen_for_stop(parent_pid: int, poll_s: float = 1.0) -> None:
    """A worker stops as on Ctrl-C (KeyboardInterrupt: its trial is queued again) when its command sends STOP_SIGNAL,
    and when the command is gone (kill -9, a crash), so that its trial does not run on unwatched. The command's
    death is polled: Python has no portable parent-death signal. parent_pid is the command's pid as the command
    gave it (in its sweep id), not os.getppid() now: a command killed while this worker was starting up has left it
    to init already, and the watch would wait for a change that has happened."""
    stop = signal.SIGINT  # only the main thread may install a handler; SIGINT's is Python's own there
    if threading.current_thread() is threading.main_thread():
        signal.signal(STOP_SIGNAL, signal.default_int_handler)
        stop = STOP_SIGNAL

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        log.warning("The sweep command (pid %d) is gone: stopping this worker.", parent_pid)
        os.kill(os.getpid(), stop)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def ignore_further_interrupts() -> None:
    """A worker's clean-up after Ctrl-C must not be cut short by the sweeper passing the interrupt on."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(STOP_SIGNAL, signal.SIG_IGN)
