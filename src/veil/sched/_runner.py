"""Runs one job process for the agent:
`python -m veil.sched._runner [--detach] [--pid-file PIDFILE] EXITFILE -- CMD`.

With --detach the launcher forks and exits at once (`veil.process.detach`), so the runner is
nobody's child: jobs outlive the agent and leave no zombie behind it. With --pid-file it records
itself there (`veil.process.write_pidfile`) for an agent restarted before it recorded the job.

It starts CMD, forwards SIGTERM and SIGINT to it, and writes CMD's exit status to EXITFILE, so
the agent learns how a job ended even if the agent itself was restarted meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from veil.process import detach, write_pidfile


def main() -> None:
    if sys.argv[1] == "--detach":  # the agent's launcher: print the runner's pid and leave
        del sys.argv[1]
        detach()  # the job's output goes to its log, and the launcher's pipe is let go
    pid_file = None
    if sys.argv[1] == "--pid-file":
        pid_file = sys.argv[2]
        del sys.argv[1:3]
    exit_file, cmd = sys.argv[1], sys.argv[3:]
    if pid_file:  # so an agent restarted before recording this process can adopt it
        write_pidfile(pid_file)
    try:
        proc = subprocess.Popen(cmd)
    except OSError as e:
        print(f"veil: cannot run {cmd[0]!r}: {e.strerror or e}", file=sys.stderr, flush=True)
        code = 127
    else:
        def forward(signum, _frame):
            proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = proc.wait()
        if code < 0:  # killed by a signal: the shell's convention
            code = 128 - code
    tmp = f"{exit_file}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{code}\n")
    os.replace(tmp, exit_file)
    sys.exit(code)


if __name__ == "__main__":
    main()
