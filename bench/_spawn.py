"""A tiny process launcher, run with ``python -I -S`` (standard library only, about 9 MiB resident).

Why: Linux reports in ``ru_maxrss`` of a child the resident size of the process image it was forked
from, up to the moment of ``exec``. A child forked straight from the benchmark (numpy and pyarrow
loaded, ~150 MiB) would show at least that much, whatever it really used. Forking from this small
process bounds that floor to ~9 MiB, like GNU ``time`` does.

Protocol: one JSON request per line on stdin ``{"argv", "env", "cwd", "stdout", "stderr", "timeout"}``;
one JSON reply per line on stdout ``{"returncode", "seconds", "maxrss_kib", "utime", "stime"}``.
``seconds`` is the wall time from just before the fork to the child's exit.
"""

import json
import os
import signal
import sys
import time


def _run(req):
    out_fd = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err_fd = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    argv = req["argv"]
    env = req.get("env") or dict(os.environ)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            if req.get("cwd"):
                os.chdir(req["cwd"])
            os.dup2(null_fd, 0)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.execvpe(argv[0], argv, env)
        except BaseException as e:
            os.write(2, f"exec failed: {e!r}\n".encode())
        os._exit(127)
    for fd in (out_fd, err_fd, null_fd):
        os.close(fd)
    timeout = req.get("timeout")
    if timeout:
        signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
        signal.setitimer(signal.ITIMER_REAL, float(timeout))
    while True:
        try:
            _, status, ru = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    t1 = time.perf_counter()
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "seconds": t1 - t0,
        "maxrss_kib": ru.ru_maxrss,
        "utime": ru.ru_utime,
        "stime": ru.ru_stime,
    }


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = _run(json.loads(line))
        except Exception as e:
            reply = {"error": repr(e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
