"""Run one command and report its peak resident memory; run as ``python -I -S _maxrss.py REQUEST_JSON``.

Linux keeps a child's ``ru_maxrss`` across ``exec``: a child forked straight from pytest (numpy, pyarrow and
psycopg loaded) would report at least pytest's own size. Forked from this small standard-library-only
process, the floor is ~10 MiB, so the number is the command's own peak.

Request: {"argv", "env", "stdout", "stderr", "timeout"}. Reply on stdout:
{"returncode", "seconds", "maxrss_kib", "timed_out"}. A command over its timeout is killed (SIGKILL).
"""

import json
import os
import signal
import sys
import time


def main() -> None:
    req = json.loads(sys.argv[1])
    out_fd = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err_fd = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(null_fd, 0)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.execve(req["argv"][0], req["argv"], req["env"])
        finally:
            os._exit(127)
    timed_out = []

    def on_alarm(*_: object) -> None:
        timed_out.append(True)
        os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(req["timeout"]))
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps({
        "returncode": os.waitstatus_to_exitcode(status),
        "seconds": time.monotonic() - started,
        "maxrss_kib": usage.ru_maxrss,
        "timed_out": bool(timed_out),
    }))


if __name__ == "__main__":
    main()
