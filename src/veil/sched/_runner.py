"""Runs one job process for the agent:
`python -m veil.sched._runner [--detach] CLAIMFILE EXITFILE -- CMD`.

With --detach the launcher forks and exits at once (`veil.process.detach`), so the runner is
nobody's child: jobs outlive the agent and leave no zombie behind it. A launcher whose agent
died meanwhile (its pipe gone) still leaves quietly: the runner goes on.

Launching is idempotent. Before CMD can run, the runner *claims* its launch: it links a file
naming itself (pid, start time, process group) to CLAIMFILE, which succeeds only if nobody
claimed it first. An agent restarted while launches were in flight claims the ones still
unclaimed as abandoned, so a runner that comes up late finds its claim taken and runs nothing,
and a claimed launch is adopted, never started again.

It then starts CMD, forwards SIGTERM and SIGINT to it, and writes CMD's exit status to EXITFILE
(atomically, synced), so the agent learns how a job ended even if it was restarted meanwhile."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from veil.process import detach, proc_start_time
from veil.sched._launch import claim, write_atomically


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "--detach":  # the agent's launcher: print the runner's pid and leave
        del args[0]
        launcher = os.getpid()
        try:
            detach()  # the job's output goes to its log, and the launcher's pipe is let go
        except BrokenPipeError:  # the agent died while launching; the runner goes on
            if os.getpid() != launcher:
                raise
            os._exit(0)
    claim_file, exit_file, cmd = args[0], args[1], args[3:]
    pid = os.getpid()
    if not claim(claim_file, f"{pid} {proc_start_time(pid)} {os.getpgid(0)}\n"):
        print(f"veil: launch {Path(claim_file).name} was given up by a restarted agent; not "
              "starting it again", file=sys.stderr, flush=True)
        return
    try:
        proc = subprocess.Popen(cmd)
    except (OSError, ValueError) as e:
        print(f"veil: cannot run {cmd[0]!r}: {getattr(e, 'strerror', None) or e}",
              file=sys.stderr, flush=True)
        code = 127
    else:
        def forward(signum, _frame):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = proc.wait()
        if code < 0:  # killed by a signal: the shell's convention
            code = 128 - code
    write_atomically(exit_file, f"{code}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
