"""The scheduling policy: fair shares by water-filling, allocation, reclaim, bin-packing.

Pure functions over plain data, so the same cycle runs in the CLI, in the agent, in tests and in
the benchmark. One cycle:

1. Demand per project = GPUs of its running and pending jobs. Fair share = min(quota, demand,
   limit), plus the spare capacity shared in proportion to overQuotaWeight among projects that
   still want more, never beyond what a project asks for (water-filling).
2. Pending jobs are considered one at a time: the project furthest below its fair share first
   (allocated / fair share), then the oldest job. A job is *entitled* when its project stays
   within its fair share with it (and, for an interactive job, within its quota). An entitled
   job is placed if it fits; otherwise GPUs are reclaimed from preemptible jobs of projects above
   their fair share - the fewest GPUs on one node - and the job placed there.
3. Then idle GPUs are lent to pending training jobs beyond their fair share (over-quota
   borrowing); such jobs are the first reclaimed later.

Whole-GPU jobs go to the fullest node they fit on; fractions to the fullest GPU they fit on.
A multi-process job is placed all at once or not at all. Non-preemptible (interactive) jobs are
never preempted. Every decision keeps a sentence saying why (`reason`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EPS = 1e-9


@dataclass
class Project:
    name: str
    quota: float
    weight: float | None = None  # overQuotaWeight; None: the quota
    limit: float | None = None  # most GPUs it may hold; None: no limit
    nodes: list[str] | None = None  # node affinity; None: any node
    interactive_time_limit: float | None = None  # seconds

    @property
    def over_quota_weight(self) -> float:
        return self.quota if self.weight is None else self.weight


@dataclass
class Job:
    name: str
    project: str
    gpus: float  # per process: a fraction in (0, 1) or a whole number
    processes: int = 1
    interactive: bool = False
    seq: int = 0  # submission order
    placement: list[tuple[str, list[int]]] | None = None  # per process: node, GPU indices
    reason: str = ""

    @property
    def preemptible(self) -> bool:
        return not self.interactive

    @property
    def total(self) -> float:
        return self.gpus * self.processes

    @property
    def running(self) -> bool:
        return self.placement is not None


@dataclass
class Node:
    name: str
    gpus: int
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Preemption:
    job: str
    for_job: str
    why: str


@dataclass
class Cycle:
    fair: dict[str, float]
    allocated: dict[str, float]
    demand: dict[str, float]
    started: list[str] = field(default_factory=list)
    preempted: list[Preemption] = field(default_factory=list)


def fair_shares(projects: dict[str, Project], demand: dict[str, float],
                capacity: float) -> dict[str, float]:
    """min(quota, demand, limit) each, then the spare capacity by overQuotaWeight among the
    projects that want more, capped at their demand and limit."""
    cap = {p: min(demand.get(p, 0.0), pr.limit if pr.limit is not None else math.inf)
           for p, pr in projects.items()}
    share = {p: min(pr.quota, cap[p]) for p, pr in projects.items()}
    spare = capacity - sum(share.values())
    while spare > EPS:
        active = [p for p in projects if cap[p] - share[p] > EPS
                  and projects[p].over_quota_weight > 0]
        if not active:
            break
        weights = sum(projects[p].over_quota_weight for p in active)
        given = 0.0
        for p in active:
            add = min(spare * projects[p].over_quota_weight / weights, cap[p] - share[p])
            share[p] += add
            given += add
        spare -= given
        if given <= EPS:
            break
    return share


class Cluster:
    """Per-GPU use (0 to 1) of every node, and which jobs sit where."""

    def __init__(self, nodes: list[Node]):
        self.nodes = {n.name: n for n in nodes}
        self.used = {n.name: [0.0] * n.gpus for n in nodes}

    @property
    def capacity(self) -> float:
        return float(sum(n.gpus for n in self.nodes.values()))

    def copy(self) -> Cluster:
        c = Cluster([])
        c.nodes = self.nodes
        c.used = {k: list(v) for k, v in self.used.items()}
        return c

    def add(self, job: Job) -> None:
        for node, gpus in job.placement or []:
            for g in gpus:
                self.used[node][g] += job.gpus if job.gpus < 1 else 1.0

    def remove(self, job: Job) -> None:
        for node, gpus in job.placement or []:
            for g in gpus:
                self.used[node][g] -= job.gpus if job.gpus < 1 else 1.0
                if abs(self.used[node][g]) < EPS:
                    self.used[node][g] = 0.0

    def free_whole(self, node: str) -> list[int]:
        return [i for i, u in enumerate(self.used[node]) if u <= EPS]

    def fit_one(self, gpus: float, allowed: list[str]) -> tuple[str, list[int]] | None:
        """Where one process of `gpus` goes: fractions to the fullest GPU they fit on, whole
        GPUs to the fullest node that has enough free ones."""
        if gpus < 1:
            best = None
            for node in allowed:
                for i, u in enumerate(self.used[node]):
                    if u + gpus <= 1 + EPS and (best is None or u > best[0] + EPS):
                        best = (u, node, i)
            return (best[1], [best[2]]) if best else None
        need = math.floor(gpus + 0.5)
        options = [(len(self.free_whole(n)), n) for n in allowed
                   if len(self.free_whole(n)) >= need]
        if not options:
            return None
        _, node = min(options, key=lambda t: t[0])  # fullest that fits; first among equals
        return node, self.free_whole(node)[:need]

    def fit(self, job: Job, allowed: list[str]) -> list[tuple[str, list[int]]] | None:
        """All processes of `job`, or None (all or nothing)."""
        trial = self.copy()
        out = []
        for _ in range(job.processes):
            spot = trial.fit_one(job.gpus, allowed)
            if spot is None:
                return None
            out.append(spot)
            trial.add(Job(job.name, job.project, job.gpus, placement=[spot]))
        return out


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x - round(x)) > EPS else str(math.floor(x + 0.5))


def schedule(projects: dict[str, Project], jobs: list[Job], nodes: list[Node]) -> Cycle:
    """One scheduling cycle. Changes `jobs` in place (placement, reason); returns what it did.
    Jobs of unknown projects stay pending."""
    cluster = Cluster(nodes)
    for j in jobs:
        if j.running:
            cluster.add(j)
    demand = {p: 0.0 for p in projects}
    alloc = {p: 0.0 for p in projects}
    inter = {p: 0.0 for p in projects}
    for j in jobs:
        if j.project not in projects:
            continue
        demand[j.project] += j.total
        if j.running:
            alloc[j.project] += j.total
            if j.interactive:
                inter[j.project] += j.total
    fair = fair_shares(projects, demand, cluster.capacity)
    cycle = Cycle(fair, alloc, demand)
    allowed_all = list(cluster.nodes)

    def allowed(p: Project) -> list[str]:
        return [n for n in allowed_all if p.nodes is None or n in p.nodes]

    def ratio(p: str) -> float:
        return alloc[p] / fair[p] if fair[p] > EPS else math.inf

    pending = sorted((j for j in jobs if not j.running), key=lambda j: j.seq)
    for j in pending:
        if j.project not in projects:
            j.reason = f"project {j.project!r} does not exist"
    todo = [j for j in pending if j.project in projects]

    def place(j: Job, spot) -> None:
        j.placement = spot
        cluster.add(j)
        alloc[j.project] += j.total
        if j.interactive:
            inter[j.project] += j.total
        where = ", ".join(f"{n}:{','.join(map(str, g))}" for n, g in spot)
        j.reason = f"running on {where}"
        cycle.started.append(j.name)

    def unplace(v: Job) -> None:
        cluster.remove(v)
        v.placement = None
        alloc[v.project] -= v.total

    # --- entitled jobs, reclaiming where needed
    waiting = list(todo)
    while waiting:
        waiting.sort(key=lambda j: (ratio(j.project), j.seq))
        j = waiting.pop(0)
        p = projects[j.project]
        limit = p.limit if p.limit is not None else math.inf
        if alloc[j.project] + j.total > limit + EPS:
            j.reason = (f"{p.name} would hold {_fmt(alloc[j.project] + j.total)} GPUs, over its "
                        f"limit of {_fmt(limit)}")
            continue
        if j.interactive and inter[j.project] + j.total > p.quota + EPS:
            j.reason = (f"interactive jobs must fit {p.name}'s quota of {_fmt(p.quota)} GPUs; "
                        f"its interactive jobs hold {_fmt(inter[j.project])}")
            continue
        if alloc[j.project] + j.total > fair[j.project] + EPS:
            j.reason = (f"{p.name} holds {_fmt(alloc[j.project])} GPUs and its fair share is "
                        f"{_fmt(fair[j.project])}: this job ({_fmt(j.total)}) waits for GPUs "
                        f"to free up or for its share to grow")
            continue
        spot = cluster.fit(j, allowed(p))
        if spot is not None:
            place(j, spot)
            continue
        victims = _reclaim(j, p, jobs, projects, fair, alloc, cluster, allowed(p))
        if victims is None:
            j.reason = (f"no node has room for {_fmt(j.gpus)} GPU(s) x {j.processes}, and no "
                        f"project above its fair share can give enough back on one node")
            continue
        for v in victims:
            over = f"{v.project} held {_fmt(alloc[v.project])} GPUs, over its fair share of " \
                   f"{_fmt(fair[v.project])}"
            unplace(v)
            v.reason = (f"preempted to reclaim GPUs for {j.name} ({j.project}, entitled to "
                        f"{_fmt(fair[j.project])}): {over}")
            cycle.preempted.append(Preemption(v.name, j.name, v.reason))
            waiting.append(v)  # it may fit elsewhere in this same cycle
        spot = cluster.fit(j, allowed(p))
        assert spot is not None
        place(j, spot)

    # --- over-quota borrowing: idle GPUs to pending training jobs beyond their fair share
    for j in sorted((j for j in jobs if not j.running and j.project in projects
                     and j.preemptible), key=lambda j: (ratio(j.project), j.seq)):
        p = projects[j.project]
        limit = p.limit if p.limit is not None else math.inf
        if alloc[j.project] + j.total > limit + EPS:
            continue
        spot = cluster.fit(j, allowed(p))
        if spot is not None:
            place(j, spot)
            j.reason += " (borrowing idle GPUs beyond its fair share: first to be reclaimed)"
    return cycle


def _reclaim(j: Job, p: Project, jobs: list[Job], projects: dict[str, Project],
             fair: dict[str, float], alloc: dict[str, float], cluster: Cluster,
             allowed: list[str]) -> list[Job] | None:
    """The fewest GPUs of preemptible jobs of projects above their fair share whose removal lets
    `j` fit, all on one node for a single-process job; None if there is no such set."""
    best: tuple[float, list[Job]] | None = None
    running = [v for v in jobs if v.running and v.preemptible and v.project != j.project
               and v.project in projects]
    for node in allowed if j.processes == 1 else [None]:
        cands = [v for v in running if node is None or any(n == node for n, _ in v.placement)]
        cands.sort(key=lambda v: (-(alloc[v.project] / fair[v.project])
                                  if fair[v.project] > EPS else -math.inf, -v.seq))
        trial = cluster.copy()
        left = dict(alloc)
        chosen: list[Job] = []
        targets = [node] if node else allowed
        for v in cands:
            if trial.fit(j, targets) is not None:
                break
            if left[v.project] <= fair[v.project] + EPS:
                continue  # that project is at or below its share now
            trial.remove(v)
            left[v.project] -= v.total
            chosen.append(v)
        if trial.fit(j, targets) is None:
            continue
        for v in list(reversed(chosen)):  # drop victims that turn out not to be needed
            t2 = trial.copy()
            t2.add(v)
            if t2.fit(j, targets) is not None:
                trial = t2
                chosen.remove(v)
        cost = sum(v.total for v in chosen)
        if best is None or cost < best[0] - EPS:
            best = (cost, chosen)
    return best[1] if best else None
