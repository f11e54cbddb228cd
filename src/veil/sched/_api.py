"""Projects, nodes and jobs in SQLite (`VEIL_HOME/sched.db`), with a scheduling cycle after every
change, so the allocation the tables show is always the policy's current answer. The agent
(`veil scheduler run`, see _agent) turns that allocation into processes."""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from veil._config import home_dir, veil_home
from veil.errors import AlreadyExists, InUse, InvalidArgument, NotFound
from veil.sched._policy import (
    EPS,
    Cycle,
    Job,
    Node,
    Project,
    gpus_text,
    placement_text,
    schedule,
)

# Bounds (docs/scheduling.md, "Bad input"): what a node, a job and a project can ever hold.
MAX_NODE_GPUS = 1024
MIN_FRACTION = 0.01  # the smallest GPU fraction a job may ask for, or a quota may be
MAX_PROCESSES = 1024
MAX_CLUSTER_GPUS = 2**20  # quotas and limits: 1024 nodes of 1024 GPUs
MAX_WEIGHT = 1e6
MAX_TIME_LIMIT = 366 * 86400  # seconds
MAX_COMMAND_BYTES = 128 * 1024  # Linux's limit for one argument (MAX_ARG_STRLEN)
TOMBSTONE = "~"  # prefix of a deleted job whose name was reused while its processes stop
RECENT_S = 3600.0  # `veil job list` shows jobs that ended this many seconds ago or less
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
  name TEXT PRIMARY KEY, quota REAL NOT NULL, weight REAL, lim REAL, nodes TEXT,
  interactive_time_limit REAL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  name TEXT PRIMARY KEY, gpus INTEGER NOT NULL, labels TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS jobs (
  name TEXT PRIMARY KEY, project TEXT NOT NULL, gpus REAL NOT NULL, processes INTEGER NOT NULL,
  interactive INTEGER NOT NULL, port INTEGER, command TEXT NOT NULL, seq INTEGER NOT NULL,
  state TEXT NOT NULL, placement TEXT, reason TEXT NOT NULL DEFAULT '', submitted REAL NOT NULL,
  started REAL, ended REAL, preemptions INTEGER NOT NULL DEFAULT 0, pids TEXT,
  exit_code INTEGER, stop_requested REAL, held TEXT, launch TEXT);
CREATE TABLE IF NOT EXISTS events (
  t REAL NOT NULL, kind TEXT NOT NULL, job TEXT, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS allocation (
  t REAL NOT NULL, project TEXT NOT NULL, gpus REAL NOT NULL);
"""
ACTIVE = ("pending", "running")


def _db_path(home: Path | None) -> Path:
    return Path(home or veil_home()) / "sched.db"


@contextlib.contextmanager
def transaction(home: Path | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE): commands and the agent never interleave."""
    path = _db_path(home)
    home_dir(path.parent)  # private (0700) when this is the first write to the home
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.executescript(SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            _migrate(db)
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since a database was made (in the open transaction)."""
    columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
    if "launch" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN launch TEXT")


def jobs_dir(home: Path | None = None) -> Path:
    """Where the agent keeps job logs and its runners' claim and exit files."""
    return Path(home or veil_home()) / "sched" / "jobs"


def log_path(name: str, home: Path | None = None) -> Path:
    return jobs_dir(home) / f"{name}.log"


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 63:
        raise InvalidArgument(f"invalid {what} {name!r}: lower-case letters, digits, '-' and "
                              "'.', starting and ending with a letter or digit")
    return name


# ------------------------------------------------------------------ loading and the cycle
def _projects(db) -> dict[str, Project]:
    return {r["name"]: Project(r["name"], r["quota"], r["weight"], r["lim"],
                               json.loads(r["nodes"]) if r["nodes"] else None,
                               r["interactive_time_limit"])
            for r in db.execute("SELECT * FROM projects ORDER BY name")}


def _nodes(db) -> list[Node]:
    return [Node(r["name"], r["gpus"], json.loads(r["labels"]))
            for r in db.execute("SELECT * FROM nodes ORDER BY name")]


def _jobs(db) -> list[Job]:
    """The jobs the policy decides on. A pending job whose old processes are still being
    stopped (or whose launch is not settled yet) is left out until they are gone, so it is
    never placed twice."""
    out = []
    for r in db.execute("SELECT * FROM jobs WHERE state='running' OR (state='pending' AND "
                        "pids IS NULL AND launch IS NULL) ORDER BY seq"):
        placement = [(n, list(g)) for n, g in json.loads(r["placement"])] \
            if r["placement"] else None
        out.append(Job(r["name"], r["project"], r["gpus"], r["processes"],
                       bool(r["interactive"]), r["seq"], placement, r["reason"]))
    return out


def run_cycle(db, now: float | None = None) -> Cycle:
    """Schedule and store the result: placements, reasons, preemptions, the allocation."""
    now = time.time() if now is None else now
    projects, nodes, jobs = _projects(db), _nodes(db), _jobs(db)
    before = {j.name: j.running for j in jobs}
    cycle = schedule(projects, jobs, nodes)
    preempted = {p.job: p.why for p in cycle.preempted}
    old = {j.name: j.placement for j in _jobs(db)}
    for j in jobs:
        placement = json.dumps(j.placement) if j.placement else None
        if j.running and before[j.name] and j.placement != old.get(j.name):
            raise AssertionError(f"the policy moved running job {j.name} in place")
        if j.running and not before[j.name]:
            db.execute("UPDATE jobs SET state='running', placement=?, reason=?, started=? "
                       "WHERE name=?", (placement, j.reason, now, j.name))
            db.execute("INSERT INTO events VALUES (?, 'start', ?, ?)", (now, j.name, j.reason))
        elif not j.running and before[j.name]:
            db.execute("UPDATE jobs SET state='pending', held=placement, placement=NULL, "
                       "reason=?, preemptions=preemptions+?, stop_requested=? WHERE name=?",
                       (j.reason, int(j.name in preempted), now, j.name))
            db.execute("INSERT INTO events VALUES (?, 'preempt', ?, ?)",
                       (now, j.name, preempted.get(j.name, j.reason)))
        else:
            db.execute("UPDATE jobs SET reason=? WHERE name=?", (j.reason, j.name))
    last = {r["project"]: r["gpus"] for r in db.execute(
        "SELECT project, gpus FROM allocation a WHERE t = (SELECT max(t) FROM allocation b "
        "WHERE b.project = a.project)")}
    for p in projects:
        alloc = sum(j.total for j in jobs if j.project == p and j.running)
        if abs(last.get(p, -1.0) - alloc) > EPS:
            db.execute("INSERT INTO allocation VALUES (?, ?, ?)", (now, p, alloc))
    return cycle


# ------------------------------------------------------------------ projects and nodes
@dataclass
class ProjectRow:
    name: str
    quota: float
    over_quota_weight: float
    limit: float | None
    nodes: list[str] | None
    interactive_time_limit: float | None
    allocated: float
    fair_share: float
    running: int
    pending: int


def create_project(name: str, quota: float, *, weight: float | None = None,
                   limit: float | None = None, nodes: list[str] | None = None,
                   interactive_time_limit: float | None = None,
                   home: Path | None = None) -> str | None:
    """Create a project. Returns a warning when the quotas sum past the cluster's GPUs."""
    _check_name(name, "project name")
    for v, what in ((quota, "--gpus (quota)"), (limit, "--limit")):
        if v is not None and not (_number(v) and (v == 0 or
                                                  MIN_FRACTION <= v <= MAX_CLUSTER_GPUS)):
            raise InvalidArgument(f"{what} must be a finite number of GPUs, 0 or from "
                                  f"{MIN_FRACTION:g} to {MAX_CLUSTER_GPUS}, not {_show(v)}")
    if weight is not None and not (_number(weight) and 0 <= weight <= MAX_WEIGHT):
        raise InvalidArgument(f"--over-quota-weight must be a finite number from 0 to "
                              f"{MAX_WEIGHT:g}, not {_show(weight)}")
    if limit is not None and limit < quota:
        raise InvalidArgument(f"--limit {limit:g} is below the quota {quota:g}")
    if interactive_time_limit is not None and not (
            _number(interactive_time_limit) and 1 <= interactive_time_limit <= MAX_TIME_LIMIT):
        raise InvalidArgument(f"--interactive-time-limit must be a finite number of seconds "
                              f"from 1 to {MAX_TIME_LIMIT} (366 days), not "
                              f"{_show(interactive_time_limit)}")
    with transaction(home) as db:
        if db.execute("SELECT 1 FROM projects WHERE name=?", (name,)).fetchone():
            raise AlreadyExists(f"project {name!r} already exists")
        known = {n.name for n in _nodes(db)}
        for n in nodes or []:
            if n not in known:
                raise NotFound(f"no node {n!r} for the affinity (veil node list)")
        db.execute("INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (name, float(quota), weight, limit, json.dumps(nodes) if nodes else None,
                    interactive_time_limit, time.time()))
        total = db.execute("SELECT sum(quota) FROM projects").fetchone()[0]
        capacity = sum(n.gpus for n in _nodes(db))
        run_cycle(db)
    if total > capacity + EPS:
        return (f"quotas now sum to {gpus_text(total)} GPUs, more than the cluster's {capacity}: "
                "not every quota can be guaranteed")
    return None


def delete_project(name: str, *, home: Path | None = None) -> None:
    with transaction(home) as db:
        if not db.execute("SELECT 1 FROM projects WHERE name=?", (name,)).fetchone():
            raise NotFound(f"no project {name!r} (veil project list)")
        n = db.execute("SELECT count(*) FROM jobs WHERE project=? AND state IN "
                       "('pending', 'running')", (name,)).fetchone()[0]
        if n:
            raise InUse(f"project {name!r} has {n} active job(s); delete them first")
        db.execute("DELETE FROM projects WHERE name=?", (name,))
        run_cycle(db)


def list_projects(*, home: Path | None = None) -> list[ProjectRow]:
    """Projects with what they hold and their fair share now (read only: no cycle is run)."""
    from veil.sched._policy import fair_shares

    with transaction(home) as db:
        projects = _projects(db)
        jobs = _jobs(db)
        capacity = float(sum(n.gpus for n in _nodes(db)))
        demand = {p: sum(j.total for j in jobs if j.project == p) for p in projects}
        allocated = {p: sum(j.total for j in jobs if j.project == p and j.running)
                     for p in projects}
        fair = fair_shares(projects, demand, capacity)
        counts = {(r["project"], r["state"]): r["n"] for r in db.execute(
            "SELECT project, state, count(*) AS n FROM jobs GROUP BY project, state")}
    return [ProjectRow(p.name, p.quota, p.over_quota_weight, p.limit, p.nodes,
                       p.interactive_time_limit, round(allocated[p.name], 6),
                       round(fair[p.name], 6), counts.get((p.name, "running"), 0),
                       counts.get((p.name, "pending"), 0)) for p in projects.values()]


def get_project(name: str, *, home: Path | None = None) -> ProjectRow:
    """One project as `list_projects` shows it."""
    for p in list_projects(home=home):
        if p.name == name:
            return p
    raise NotFound(f"no project {name!r} (veil project list)")


def add_node(name: str, gpus: int, labels: dict[str, str] | None = None, *,
             home: Path | None = None) -> dict:
    """Add a node; returns it as `list_nodes` shows it."""
    _check_name(name, "node name")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= MAX_NODE_GPUS:
        raise InvalidArgument(f"--gpus must be a whole number from 0 to {MAX_NODE_GPUS}, not "
                              f"{gpus!r}")
    with transaction(home) as db:
        if db.execute("SELECT 1 FROM nodes WHERE name=?", (name,)).fetchone():
            raise AlreadyExists(f"node {name!r} already exists")
        db.execute("INSERT INTO nodes VALUES (?, ?, ?)", (name, gpus, json.dumps(labels or {})))
        run_cycle(db)
        nodes, jobs = _nodes(db), _jobs(db)
    return next(n for n in _node_rows(nodes, jobs) if n["name"] == name)


def delete_node(name: str, *, home: Path | None = None) -> None:
    with transaction(home) as db:
        if not db.execute("SELECT 1 FROM nodes WHERE name=?", (name,)).fetchone():
            raise NotFound(f"no node {name!r} (veil node list)")
        for j in _jobs(db):
            if j.running and any(n == name for n, _ in j.placement):
                raise InUse(f"job {j.name!r} runs on node {name!r}; delete it first")
        db.execute("DELETE FROM nodes WHERE name=?", (name,))
        run_cycle(db)


def list_nodes(*, home: Path | None = None) -> list[dict]:
    """Nodes with their GPUs, labels and the GPUs allocated on them (in all, and per GPU)."""
    with transaction(home) as db:
        nodes, jobs = _nodes(db), _jobs(db)
    return _node_rows(nodes, jobs)


def _node_rows(nodes: list[Node], jobs: list[Job]) -> list[dict]:
    out = []
    for n in nodes:
        used = [0.0] * n.gpus
        for j in jobs:
            for node, gpus in j.placement or []:
                if node == n.name:
                    for g in gpus:
                        used[g] += j.gpus if j.gpus < 1 else 1.0
        out.append({"name": n.name, "gpus": n.gpus, "allocated": round(sum(used), 6),
                    "labels": n.labels, "per_gpu": [round(u, 6) for u in used]})
    return out


# ------------------------------------------------------------------ jobs
@dataclass
class JobRow:
    name: str
    project: str
    gpus: float
    processes: int
    interactive: bool
    state: str
    placement: list | None
    reason: str
    submitted: float
    started: float | None
    ended: float | None
    preemptions: int
    port: int | None
    command: list[str]
    pid: int | None
    exit_code: int | None

    @property
    def type(self) -> str:
        return "Interactive" if self.interactive else "Train"

    @property
    def nodes(self) -> str:
        return ",".join(sorted({n for n, _ in self.placement})) if self.placement else "-"

    @property
    def where(self) -> str:
        """Its placement for people: `dgx1-1 GPU 5`, `-` when it holds none."""
        return placement_text(self.placement)

    def service_url(self, host: str = "127.0.0.1") -> str | None:
        return f"http://{host}:{self.port}/" if self.port and self.state == "running" else None


def _row(r) -> JobRow:
    return JobRow(r["name"], r["project"], r["gpus"], r["processes"], bool(r["interactive"]),
                  r["state"], json.loads(r["placement"]) if r["placement"] else None,
                  r["reason"], r["submitted"], r["started"], r["ended"], r["preemptions"],
                  r["port"], json.loads(r["command"]),
                  json.loads(r["pids"])[0][0] if r["pids"] else None, r["exit_code"])


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


def check_gpus(gpus: float) -> float:
    """GPUs per process: a fraction from MIN_FRACTION to 1, or whole GPUs up to a node's most."""
    if not _number(gpus) or not MIN_FRACTION - EPS <= gpus <= MAX_NODE_GPUS:
        raise InvalidArgument(f"-g/--gpus must be a finite number of GPUs per process, a "
                              f"fraction from {MIN_FRACTION:g} to 1 or whole GPUs up to "
                              f"{MAX_NODE_GPUS}, not {_show(gpus)}")
    if gpus > 1 and abs(gpus - round(gpus)) > EPS:
        raise InvalidArgument(f"-g {gpus:g}: a fraction must be in (0, 1]; above one GPU, ask "
                              "for whole GPUs")
    return float(round(gpus)) if gpus >= 1 else float(gpus)


def check_command(command: list[str]) -> list[str]:
    """The job's argv: a non-empty list of strings whose program is named."""
    example = "e.g. veil job submit j -p team-a -g 1 -- python train.py"
    if isinstance(command, (str, bytes)) or not all(isinstance(a, str) for a in command or []):
        raise InvalidArgument(f"the command must be a list of arguments, {example}")
    command = list(command or [])
    if not command:
        raise InvalidArgument(f"give the job's command after --, {example}")
    if not command[0].strip():
        raise InvalidArgument(f"the command's program is empty ({command[0]!r}): give the "
                              f"job's command after --, {example}")
    if any("\0" in a for a in command):
        raise InvalidArgument("the command contains a NUL byte, which no program can receive")
    size = sum(len(a.encode(errors="surrogateescape")) + 1 for a in command)
    if size > MAX_COMMAND_BYTES:
        raise InvalidArgument(f"the command is {size} bytes long, more than the "
                              f"{MAX_COMMAND_BYTES} a job's command may have (pass long "
                              "input in a file)")
    return command


def submit(name: str, project: str, gpus: float, command: list[str], *,
           interactive: bool = False, port: int | None = None, processes: int = 1,
           home: Path | None = None) -> JobRow:
    """Queue a job. A name in use by a deleted job is taken over: the old record goes, once
    its processes have stopped, and its log with it."""
    _check_name(name, "job name")
    gpus = check_gpus(gpus)
    command = check_command(command)
    if isinstance(processes, bool) or not isinstance(processes, int) or \
            not 1 <= processes <= MAX_PROCESSES:
        raise InvalidArgument(f"--processes must be a whole number from 1 to {MAX_PROCESSES}, "
                              f"not {processes!r}")
    if processes > 1 and gpus < 1:
        raise InvalidArgument("a multi-process job takes whole GPUs per process")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 1 <= port <= 65535):
        raise InvalidArgument(f"--port must be in 1..65535, not {port}")
    if port is not None and not interactive:
        raise InvalidArgument("--port exposes a service of an interactive job: add "
                              "--interactive")
    with transaction(home) as db:
        projects = _projects(db)
        if project not in projects:
            raise NotFound(f"no project {project!r} (veil project create {project} --gpus N)")
        old = db.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone()
        if old is not None and old["state"] != "deleted":
            raise AlreadyExists(f"a job named {name!r} exists (veil job delete {name} first)")
        if interactive:
            held = db.execute("SELECT coalesce(sum(gpus * processes), 0) FROM jobs WHERE "
                              "project=? AND interactive=1 AND state IN ('pending', 'running')",
                              (project,)).fetchone()[0]
            quota = projects[project].quota
            if held + gpus * processes > quota + EPS:
                raise InvalidArgument(
                    f"interactive jobs are not preemptible, so they must fit {project}'s quota "
                    f"of {quota:g} GPUs: its interactive jobs hold {held:g}, this one asks "
                    f"{gpus * processes:g}")
        nodes = _nodes(db)
        if nodes:  # a job no node could ever hold would wait forever
            biggest = max(n.gpus for n in nodes)
            allowed = projects[project].nodes
            room = [n for n in nodes if allowed is None or n.name in allowed]
            if gpus > max((n.gpus for n in room), default=0) or \
                    gpus * processes > sum(n.gpus for n in room):
                raise InvalidArgument(
                    f"{gpus:g} GPU(s) x {processes} can never be placed: the largest node "
                    f"{project} may use has {max((n.gpus for n in room), default=0)} GPUs, "
                    f"all of them {sum(n.gpus for n in room)} (largest in the cluster: "
                    f"{biggest})")
        seq = db.execute("SELECT coalesce(max(seq), -1) + 1 FROM jobs").fetchone()[0]
        if old is not None:  # a deleted job's name, reused
            if old["pids"] is None and old["launch"] is None:
                db.execute("DELETE FROM jobs WHERE name=?", (name,))
            else:  # the agent still stops its processes under a name nobody can give
                db.execute("UPDATE jobs SET name=? WHERE name=?",
                           (f"{TOMBSTONE}{name}.{old['seq']}", name))
            log_path(name, home).unlink(missing_ok=True)
        db.execute("INSERT INTO jobs (name, project, gpus, processes, interactive, port, "
                   "command, seq, state, submitted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                   "'pending', ?)", (name, project, gpus, processes, int(interactive), port,
                                     json.dumps(list(command)), seq, time.time()))
        db.execute("INSERT INTO events VALUES (?, 'submit', ?, ?)", (time.time(), name,
                                                                     project))
        run_cycle(db)
        return _row(db.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone())


def delete_jobs(names: list[str], *, project: str | None = None, all_jobs: bool = False,
                home: Path | None = None) -> list[JobRow]:
    """Delete jobs: pending ones at once; running ones are marked and their processes stopped by
    the agent. Their GPUs go back to the pool now. With `project`, every job must be its; with
    `all_jobs` (and no names), every pending or running job (of `project`) goes."""
    names = list(names or [])
    if all_jobs and names:
        raise InvalidArgument("give job names or --all, not both")
    if not all_jobs and not names:
        raise InvalidArgument("give the names of the jobs to delete, or --all for every active "
                              "job")
    with transaction(home) as db:
        if project is not None and project not in _projects(db):
            raise NotFound(f"no project {project!r} (veil project list)")
        if all_jobs:
            names = [r["name"] for r in db.execute(
                "SELECT name FROM jobs WHERE state IN ('pending', 'running') AND "
                "(? IS NULL OR project=?) ORDER BY seq", (project, project))]
        rows = []
        for n in dict.fromkeys(names):
            r = db.execute("SELECT * FROM jobs WHERE name=?", (n,)).fetchone()
            if r is None:
                raise NotFound(f"no job {n!r} (veil job list --all)")
            if project is not None and r["project"] != project:
                raise NotFound(f"no job {n!r} in project {project!r} (it is in "
                               f"{r['project']!r})")
            rows.append(_row(r))
        now = time.time()
        for r in rows:
            # what it holds, and when it ended, stay as they were for a job deleted twice
            db.execute("UPDATE jobs SET state='deleted', held=coalesce(placement, held), "
                       "placement=NULL, ended=coalesce(ended, ?), stop_requested=?, "
                       "reason='deleted' WHERE name=?", (now, now, r.name))
            db.execute("INSERT INTO events VALUES (?, 'delete', ?, '')", (now, r.name))
        run_cycle(db)
    return rows


def list_jobs(*, project: str | None = None, all_states: bool = False,
              home: Path | None = None) -> list[JobRow]:
    """Pending and running jobs, in submission order; with `all_states`, also the completed,
    failed and deleted ones."""
    with transaction(home) as db:
        if project is not None and project not in _projects(db):
            raise NotFound(f"no project {project!r} (veil project list)")
        q = f"SELECT * FROM jobs WHERE substr(name, 1, 1) != '{TOMBSTONE}'" + (
            "" if all_states else " AND state IN ('pending', 'running')")
        rows = [_row(r) for r in db.execute(q + " ORDER BY seq")]
    return [r for r in rows if project is None or r.project == project]


@dataclass
class RecentJobs:
    """What `veil job list` shows: the active jobs and those that ended (completed or failed)
    `within` seconds ago or less, and how many others it leaves out (`--all` shows them)."""
    jobs: list[JobRow]
    older: int  # completed or failed before the window
    deleted: int
    within: float


def recent_jobs(*, project: str | None = None, within: float = RECENT_S,
                home: Path | None = None) -> RecentJobs:
    """Pending and running jobs, and the jobs that ended in the last `within` seconds, so a
    job that failed right after its submission is still there to be seen."""
    since = time.time() - within
    shown, older, deleted = [], 0, 0
    for r in list_jobs(project=project, all_states=True, home=home):
        if r.state == "deleted":
            deleted += 1
        elif r.state in ACTIVE or (r.ended if r.ended is not None else r.submitted) >= since:
            shown.append(r)
        else:
            older += 1
    return RecentJobs(shown, older, deleted, within)


def get_job(name: str, *, home: Path | None = None) -> JobRow:
    with transaction(home) as db:
        r = db.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone()
    if r is None:
        raise NotFound(f"no job {name!r} (veil job list --all)")
    return _row(r)


def job_log(name: str, tail: int | None = None, *, home: Path | None = None) -> list[str] | None:
    """The last `tail` lines of a job's output (all of them for None); None when it has none
    yet. Reads from the end, so a long log costs what is shown."""
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise InvalidArgument(f"--tail must be a whole number of lines >= 0, not {tail!r}")
    get_job(name, home=home)
    try:
        with open(log_path(name, home), "rb") as f:
            if tail is None:
                data = f.read()
            else:
                data, at = b"", f.seek(0, 2)
                while at > 0 and data.count(b"\n", 0, len(data) - 1) < tail:
                    step = min(at, 1 << 16)
                    at -= step
                    f.seek(at)
                    data = f.read(step) + data
    except FileNotFoundError:
        return None
    lines = data.decode(errors="replace").splitlines()
    return lines[len(lines) - tail:] if tail is not None and tail < len(lines) else lines


def why(name: str, *, home: Path | None = None) -> str:
    """Why a job is where it is: running where, pending for what, preempted for whom."""
    j = get_job(name, home=home)
    with transaction(home) as db:
        last = db.execute("SELECT detail FROM events WHERE job=? AND kind='preempt' ORDER BY t "
                          "DESC LIMIT 1", (name,)).fetchone()
    history = f" It was last {last['detail']}." if last and j.preemptions else ""
    if j.state == "running":
        return f"{j.name} is {j.reason}.{history}"
    if j.state == "pending":
        prefix = f"{j.name} is pending"
        if j.preemptions:
            prefix += f" (preempted {j.preemptions} time(s))"
        return f"{prefix}: {j.reason or 'not scheduled yet'}.{history}"
    if j.state == "deleted":
        return f"{j.name} was deleted."
    code = f" with exit code {j.exit_code}" if j.exit_code is not None else ""
    detail = "" if not j.reason or j.reason.startswith("exited with status") else f": {j.reason}"
    return f"{j.name} {j.state}{code}{detail}."


def history(*, home: Path | None = None) -> list[tuple[float, str, float]]:
    with transaction(home) as db:
        return [(r["t"], r["project"], r["gpus"]) for r in
                db.execute("SELECT * FROM allocation ORDER BY t")]
