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

import heapq
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
    """Per-GPU use (0 to 1) of every node, indexed for fast placement: nodes bucketed by their
    number of free whole GPUs (a heap per count, stale entries dropped lazily), and the GPUs in
    partial use. Placement is deterministic: among equals, the node listed first."""

    def __init__(self, nodes: list[Node]):
        self.nodes = {n.name: n for n in nodes}
        self.order = {n.name: i for i, n in enumerate(nodes)}
        self.names = [n.name for n in nodes]
        self.used = {n.name: [0.0] * n.gpus for n in nodes}
        self.free = [n.gpus for n in nodes]
        self.heaps: dict[int, list[int]] = {}
        for i, n in enumerate(nodes):
            self.heaps.setdefault(n.gpus, []).append(i)
        self.max_gpus = max((n.gpus for n in nodes), default=0)
        self.partial: dict[tuple[str, int], float] = {}

    @property
    def capacity(self) -> float:
        return float(sum(n.gpus for n in self.nodes.values()))

    def copy(self) -> Cluster:
        c = Cluster([])
        c.nodes, c.order, c.names, c.max_gpus = self.nodes, self.order, self.names, self.max_gpus
        c.used = {k: list(v) for k, v in self.used.items()}
        c.free = list(self.free)
        c.heaps = {k: list(v) for k, v in self.heaps.items()}
        c.partial = dict(self.partial)
        return c

    def _change(self, node: str, g: int, delta: float) -> None:
        before = self.used[node][g]
        after = before + delta
        if abs(after) < EPS:
            after = 0.0
        self.used[node][g] = after
        i = self.order[node]
        if before <= EPS < after or after <= EPS < before:
            self.free[i] += -1 if after > EPS else 1
            heapq.heappush(self.heaps.setdefault(self.free[i], []), i)
        if EPS < after < 1 - EPS:
            self.partial[(node, g)] = after
        else:
            self.partial.pop((node, g), None)

    def add(self, job: Job) -> None:
        for node, gpus in job.placement or []:
            for g in gpus:
                self._change(node, g, job.gpus if job.gpus < 1 else 1.0)

    def remove(self, job: Job) -> None:
        for node, gpus in job.placement or []:
            for g in gpus:
                self._change(node, g, -(job.gpus if job.gpus < 1 else 1.0))

    def free_whole(self, node: str) -> list[int]:
        return [i for i, u in enumerate(self.used[node]) if u <= EPS]

    def _fullest_with(self, need: int) -> str | None:
        for k in range(need, self.max_gpus + 1):
            h = self.heaps.get(k)
            while h and self.free[h[0]] != k:
                heapq.heappop(h)
            if h:
                return self.names[h[0]]
        return None

    def fit_one(self, gpus: float, allowed: list[str] | None) -> tuple[str, list[int]] | None:
        """Where one process of `gpus` goes: fractions to the fullest GPU they fit on, whole
        GPUs to the fullest node that has enough free ones. `allowed` None: any node."""
        if gpus < 1:
            best = None
            for (node, g), u in self.partial.items():
                if u + gpus <= 1 + EPS and (allowed is None or node in allowed):
                    key = (-u, self.order[node], g)
                    if best is None or key < best[0]:
                        best = (key, node, g)
            if best:
                return best[1], [best[2]]
            need = 1
        else:
            need = math.floor(gpus + 0.5)
        if allowed is None:
            node = self._fullest_with(need)
        else:
            options = [(self.free[self.order[n]], self.order[n], n) for n in allowed
                       if self.free[self.order[n]] >= need]
            node = min(options)[2] if options else None
        if node is None:
            return None
        return node, self.free_whole(node)[:need]

    def fit(self, job: Job, allowed: list[str] | None) -> list[tuple[str, list[int]]] | None:
        """All processes of `job`, or None (all or nothing); the cluster is left unchanged."""
        out: list[tuple[str, list[int]]] = []
        for _ in range(job.processes):
            spot = self.fit_one(job.gpus, allowed)
            if spot is None:
                break
            out.append(spot)
            self.add(Job(job.name, job.project, job.gpus, placement=[spot]))
        for spot in out:
            self.remove(Job(job.name, job.project, job.gpus, placement=[spot]))
        return out if len(out) == job.processes else None


def gpus_text(x: float) -> str:
    """A number of GPUs for people: whole numbers as such, others to two decimals (4.13), a
    smaller amount to two significant digits (0.001)."""
    if abs(x - round(x)) <= EPS:
        return str(math.floor(x + 0.5))
    if abs(x) < 0.005:
        return f"{x:.2g}"
    return f"{x:.2f}".rstrip("0").rstrip(".")


def placement_text(placement: list[tuple[str, list[int]]] | None) -> str:
    """Where a job's processes run, for people: `dgx1-1 GPU 5`, `dgx1-1 GPUs 0,1; dgx1-2 GPU 3`
    (one entry per process, in rank order); `-` when it runs nowhere."""
    if not placement:
        return "-"
    return "; ".join(f"{node} GPU{'s' if len(gpus) != 1 else ''} {','.join(map(str, gpus))}"
                     for node, gpus in placement)


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

    def allowed(p: Project) -> list[str] | None:
        return None if p.nodes is None else [n for n in allowed_all if n in p.nodes]

    def ratio(p: str) -> float:
        return alloc[p] / fair[p] if fair[p] > EPS else math.inf

    pending = sorted((j for j in jobs if not j.running), key=lambda j: j.seq)
    for j in pending:
        if j.project not in projects:
            j.reason = f"project {j.project!r} does not exist"
    todo = [j for j in pending if j.project in projects]

    touched: set[str] = set()  # placed, preempted or moved in this cycle: left alone after
    consolidation_failed: set[tuple[float, tuple | None]] = set()

    def place(j: Job, spot) -> None:
        touched.add(j.name)
        j.placement = spot
        cluster.add(j)
        if j.preemptible:
            for n, _ in spot:
                vindex.setdefault(n, {})[j.name] = j
        alloc[j.project] += j.total
        if j.interactive:
            inter[j.project] += j.total
        j.reason = f"running on {placement_text(spot)}"
        cycle.started.append(j.name)

    def unplace(v: Job) -> None:
        touched.add(v.name)
        consolidation_failed.clear()  # GPUs were freed: gathering may work now
        for n, _ in v.placement:
            vindex.get(n, {}).pop(v.name, None)
        cluster.remove(v)
        v.placement = None
        alloc[v.project] -= v.total

    # --- entitled jobs, reclaiming where needed. Each project's pending jobs in submission
    # order; projects in a heap keyed (allocated / fair share, oldest pending job), a key gone
    # stale because the project got GPUs pushed back with its new value.
    queues: dict[str, list[tuple[int, str, Job]]] = {}
    for j in todo:
        queues.setdefault(j.project, []).append((j.seq, j.name, j))
    for q in queues.values():
        heapq.heapify(q)
    heads = [(ratio(q), jobs_[0][0], q) for q, jobs_ in queues.items()]
    heapq.heapify(heads)
    vindex: dict[str, dict[str, Job]] = {}  # node -> running preemptible jobs on it
    for v in jobs:
        if v.running and v.preemptible and v.project in projects:
            for n, _ in v.placement:
                vindex.setdefault(n, {})[v.name] = v
    reclaimable = any(v.running and v.preemptible and v.project in projects
                      and alloc[v.project] > fair[v.project] + EPS for v in jobs)

    def requeue(q: str) -> None:
        if queues.get(q):
            heapq.heappush(heads, (ratio(q), queues[q][0][0], q))

    while heads:
        key, seq, q = heapq.heappop(heads)
        if not queues.get(q) or queues[q][0][0] != seq:
            continue  # an old entry for this project
        if ratio(q) > key + EPS:
            requeue(q)
            continue
        _, _, j = heapq.heappop(queues[q])
        requeue(q)
        p = projects[j.project]
        limit = p.limit if p.limit is not None else math.inf
        if alloc[j.project] + j.total > limit + EPS:
            j.reason = (f"{p.name} would hold {gpus_text(alloc[j.project] + j.total)} GPUs, "
                        f"over its limit of {gpus_text(limit)}")
            continue
        if j.interactive and inter[j.project] + j.total > p.quota + EPS:
            j.reason = (f"interactive jobs must fit {p.name}'s quota of {gpus_text(p.quota)} GPUs; "
                        f"its interactive jobs hold {gpus_text(inter[j.project])}")
            continue
        if alloc[j.project] + j.total > fair[j.project] + EPS:
            j.reason = (f"{p.name} holds {gpus_text(alloc[j.project])} GPUs and its fair share "
                        f"is {gpus_text(fair[j.project])}: this job ({gpus_text(j.total)}) waits "
                        "for GPUs to free up or for its share to grow")
            continue
        spot = cluster.fit(j, allowed(p))
        if spot is not None:
            place(j, spot)
            continue
        victims = _reclaim(j, fair, alloc, cluster, allowed(p), vindex) \
            if reclaimable and any(alloc[q] > fair[q] + EPS for q in projects) else None
        if victims is None:
            key = (j.gpus, tuple(allowed(p)) if p.nodes is not None else None)
            moves = None
            if key not in consolidation_failed:
                moves = _consolidate(j, jobs, cluster, allowed(p), projects, touched)
                if moves is None:
                    consolidation_failed.add(key)
            if moves is None:
                j.reason = (f"no node has room for {gpus_text(j.gpus)} GPU(s) x {j.processes}, and "
                            "no project above its fair share can give enough back on one node")
                continue
            why = {v.name: (f"moved: stopped to gather free GPUs on one node for {j.name} "
                            f"({j.project}); it restarts where GPUs are free") for v in moves}
            victims = moves
        else:
            why = {v.name: (f"preempted to reclaim GPUs for {j.name} ({j.project}, entitled "
                            f"to {gpus_text(fair[j.project])}): {v.project} held "
                            f"{gpus_text(alloc[v.project])} GPUs, over its fair share of "
                            f"{gpus_text(fair[v.project])}") for v in victims}
        for v in victims:  # stopped now; placed again from the next cycle on
            unplace(v)
            v.reason = why[v.name]
            cycle.preempted.append(Preemption(v.name, j.name, v.reason))
        spot = cluster.fit(j, allowed(p))
        assert spot is not None
        place(j, spot)

    # --- over-quota borrowing: idle GPUs to pending training jobs beyond their fair share
    for j in sorted((j for j in jobs if not j.running and j.project in projects
                     and j.preemptible and j.name not in touched),
                    key=lambda j: (ratio(j.project), j.seq, j.name)):
        p = projects[j.project]
        limit = p.limit if p.limit is not None else math.inf
        if alloc[j.project] + j.total > limit + EPS:
            continue
        spot = cluster.fit(j, allowed(p))
        if spot is not None:
            place(j, spot)
            j.reason += " (borrowing idle GPUs beyond its fair share: first to be reclaimed)"
    return cycle


def _consolidate(j: Job, jobs: list[Job], cluster: Cluster, allowed: list[str] | None,
                 projects: dict[str, Project], touched: set[str],
                 max_nodes: int = 16) -> list[Job] | None:
    """Defragmenting (KAI's consolidation): preemptible single-process jobs to move off one node
    onto free GPUs of others so that `j` fits there; the fewest GPUs moved. None when the free
    GPUs, gathered, would still not hold `j`, or no such move exists."""
    if j.processes != 1 or j.gpus < 1:
        return None
    need = math.floor(j.gpus + 0.5)
    if sum(cluster.free) < need:
        return None
    names = [n for n in cluster.names if allowed is None or n in allowed]
    names.sort(key=lambda n: (-cluster.free[cluster.order[n]], cluster.order[n]))
    movable: dict[str, list[Job]] = {}
    for v in jobs:
        if v.running and v.preemptible and v.processes == 1 and v.gpus >= 1 \
                and v.name not in touched and v.project in projects:
            movable.setdefault(v.placement[0][0], []).append(v)
    best: tuple[float, list[Job]] | None = None
    for node in names[:max_nodes]:
        trial = cluster.copy()
        chosen: list[Job] = []
        for v in sorted(movable.get(node, []), key=lambda v: (v.gpus, -v.seq, v.name)):
            if len(trial.free_whole(node)) >= need:
                break
            pin = projects[v.project].nodes  # the moved job's own affinity
            others = [n for n in cluster.names if n != node and (pin is None or n in pin)]
            trial.remove(v)
            spot = trial.fit_one(v.gpus, others)
            if spot is None:
                trial.add(v)
                continue
            trial.add(Job(v.name, v.project, v.gpus, placement=[spot]))
            chosen.append(v)
        if len(trial.free_whole(node)) >= need and chosen:
            cost = sum(v.total for v in chosen)
            if best is None or cost < best[0]:
                best = (cost, chosen)
    return best[1] if best else None


def _node_fits(gpus: float, used: list[float]) -> bool:
    if gpus < 1:
        return any(u + gpus <= 1 + EPS for u in used)
    return sum(1 for u in used if u <= EPS) >= math.floor(gpus + 0.5)


def _reclaim(j: Job, fair: dict[str, float], alloc: dict[str, float], cluster: Cluster,
             allowed: list[str] | None, vindex: dict[str, dict[str, Job]]) -> list[Job] | None:
    """The fewest GPUs of preemptible jobs of projects above their fair share whose removal lets
    `j` fit, all on one node for a single-process job; None if there is no such set.
    `vindex`: the running preemptible jobs on each node."""
    def over(q: str) -> float:
        return alloc[q] / fair[q] if fair[q] > EPS else math.inf

    def victim(v: Job) -> bool:
        return v.project != j.project and alloc[v.project] > fair[v.project] + EPS

    best: tuple[float, list[Job]] | None = None
    if j.processes == 1:
        # the least a node with k free GPUs can cost (a fraction may need no whole GPU freed)
        need = 0 if j.gpus < 1 else math.floor(j.gpus + 0.5)
        buckets: dict[int, list[str]] = {}
        for n in cluster.names if allowed is None else allowed:
            if vindex.get(n):
                buckets.setdefault(cluster.free[cluster.order[n]], []).append(n)
        for k in sorted(buckets, reverse=True):
            if best is not None and best[0] <= need - k + EPS:
                break  # no node further on can cost less
            for node in buckets[k]:
                if best is not None and best[0] <= need - k + EPS:
                    break
                cands = sorted((v for v in vindex[node].values() if victim(v)),
                               key=lambda v: (-over(v.project), -v.seq, v.name))
                if not cands:
                    continue
                used = list(cluster.used[node])
                left = dict(alloc)
                chosen: list[Job] = []

                def take(v: Job, sign: float, used=used, node=node) -> None:
                    for n, gpus in v.placement:
                        if n == node:
                            for g in gpus:
                                used[g] += sign * (v.gpus if v.gpus < 1 else 1.0)

                for v in cands:
                    if _node_fits(j.gpus, used):
                        break
                    if left[v.project] <= fair[v.project] + EPS:
                        continue  # that project is at or below its share now
                    take(v, -1)
                    left[v.project] -= v.total
                    chosen.append(v)
                if not _node_fits(j.gpus, used):
                    continue
                for v in list(reversed(chosen)):  # drop victims that turn out not needed
                    take(v, +1)
                    if _node_fits(j.gpus, used):
                        chosen.remove(v)
                    else:
                        take(v, -1)
                cost = sum(v.total for v in chosen)
                if best is None or cost < best[0] - EPS:
                    best = (cost, chosen)
        return best[1] if best else None
    running = sorted({v.name: v for n, d in vindex.items() if allowed is None or n in allowed
                      for v in d.values() if victim(v)}.values(),
                     key=lambda v: (-over(v.project), -v.seq, v.name))
    trial = cluster.copy()  # a multi-process job: victims on any allowed node
    left = dict(alloc)
    chosen = []
    for v in running:
        if trial.fit(j, allowed) is not None:
            break
        if left[v.project] <= fair[v.project] + EPS:
            continue
        trial.remove(v)
        left[v.project] -= v.total
        chosen.append(v)
    if trial.fit(j, allowed) is None:
        return None
    for v in list(reversed(chosen)):  # drop victims that turn out not to be needed
        trial.add(v)
        if trial.fit(j, allowed) is not None:
            chosen.remove(v)
        else:
            trial.remove(v)
    return chosen
