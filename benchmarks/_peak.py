"""Run one command; report its wall time and its own peak RSS as one JSON line.

    python -I -S benchmarks/_peak.py [--stdout FILE] [--stdin FILE] -- CMD [ARG...]

Why a wrapper: on Linux a child's ru_maxrss (from wait4 or RUSAGE_CHILDREN) starts from the
high-water RSS of the process that forked it (the kernel keeps the old mm's peak across exec,
and vfork/posix_spawn children share the parent's mm until exec). Measured from run.py, a child
would report at least run.py's own peak. This wrapper is a bare interpreter (-I -S: no site,
about 10 MB), so the figure is the child's own peak to within that. And RUSAGE_CHILDREN is a
cumulative maximum over every child ever waited for, so we use os.wait4 on the one pid, which
returns that child's rusage alone.

Wall time is time.perf_counter() around starting the child and waiting for it (what
subprocess.run does), measured here so that the wrapper's own start-up is not in the figure.
The child's stderr goes to a temporary file; its last 2,000 characters are in the report.
"""

import json
import os
import subprocess
import sys
import tempfile
import time


def main(argv: list[str]) -> int:
    stdout_path, stdin_path = os.devnull, None
    while argv and argv[0] != "--":
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--stdout":
            stdout_path = value
        elif flag == "--stdin":
            stdin_path = value
        else:
            print(f"_peak.py: unknown option {flag}", file=sys.stderr)
            return 2
    cmd = argv[1:]
    if not cmd:
        print("usage: _peak.py [--stdout FILE] [--stdin FILE] -- CMD [ARG...]", file=sys.stderr)
        return 2
    with open(stdout_path, "wb") as out, tempfile.TemporaryFile() as err, \
            open(stdin_path or os.devnull, "rb") as inp:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=inp, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        err.seek(0)
        tail = err.read().decode("utf-8", "replace")[-2000:]
    print(json.dumps({
        "rc": proc.returncode,
        "wall_s": wall,
        "maxrss_kb": usage.ru_maxrss,  # kilobytes on Linux
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "stderr": tail,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
