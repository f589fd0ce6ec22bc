"""A few long subprocesses run beside the tests (see conftest.py).

Most of the suite waits on one `attn` subprocess at a time, which leaves the second core of a
2-core machine (CI's) idle. The longest commands that share nothing with other tests (the quick
benchmark, the trainings behind test_train.py's session fixtures) are therefore queued when
collection ends and run one after another on a worker thread, while the other tests run. A test
or fixture asks for its command's result with `BACKGROUND.result(key, make)`: it waits for it,
runs it at once if its turn has not come, or runs it there and then if it was never queued
(e.g. the test was run on its own). Each command, its environment (taken when it is defined,
so no test's monkeypatching leaks into it), its timeout and the assertions on its output are
what they were when the test ran it itself; only when it runs has moved.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Job:
    """subprocess.run(argv, capture_output=True, timeout=timeout, **options)."""

    argv: list[str]
    options: dict = field(default_factory=dict)
    timeout: float = 600

    def run(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv, capture_output=True, timeout=self.timeout,
                              **self.options)


class Background:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._pending: list[str] = []
        self._done: dict[str, threading.Event] = {}
        self._results: dict[str, object] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopped = False
        self._tmp: Path | None = None

    @property
    def tmp(self) -> Path:
        """A folder for the jobs' outputs, removed at the end of the session."""
        with self._lock:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="attn-tests-"))
            return self._tmp

    def add(self, key: str, job: Job) -> None:
        with self._lock:
            if key not in self._jobs:
                self._jobs[key] = job
                self._done[key] = threading.Event()
                self._pending.append(key)

    def start(self) -> None:
        if self._pending:
            threading.Thread(target=self._work, name="background-jobs", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._stopped or not self._pending:
                    return
                key = self._pending.pop(0)
            self._run(key)

    def _run(self, key: str) -> None:
        """As subprocess.run(..., capture_output=True, timeout=...) would, keeping the
        process so that stop() can end it."""
        job = self._jobs[key]
        try:
            with subprocess.Popen(job.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  **job.options) as proc:
                with self._lock:
                    self._procs[key] = proc
                    if self._stopped:
                        proc.kill()
                try:
                    out, err = proc.communicate(timeout=job.timeout)
                except subprocess.TimeoutExpired as exc:
                    proc.kill()
                    exc.output, exc.stderr = proc.communicate()
                    result: object = exc
                else:
                    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        except Exception as exc:  # e.g. the program is missing: the test reports it
            result = exc
        self._results[key] = result
        self._done[key].set()

    def result(self, key: str, make: Callable[[Path], Job]) -> subprocess.CompletedProcess:
        """The finished process of job `key` (`make(self.tmp)` defines it if it was never
        queued); raises what subprocess.run would have raised."""
        job = None if key in self._jobs else make(self.tmp)  # only this thread adds jobs
        with self._lock:
            if job is not None:
                self._jobs[key] = job
                self._done[key] = threading.Event()
                mine = True
            else:
                mine = key in self._pending
                if mine:
                    self._pending.remove(key)
        if mine:
            self._run(key)
        self._done[key].wait()
        result = self._results[key]
        if isinstance(result, BaseException):
            raise result
        return result

    def stop(self) -> None:
        """End what is still running or queued (the session is over), remove the outputs."""
        with self._lock:
            self._stopped = True
            self._pending.clear()
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


BACKGROUND = Background()
