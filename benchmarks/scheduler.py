"""Fair GPU sharing (TR-4858): the scheduling cycle's speed, and GPU allocation on a synthetic
trace against FIFO with hard quotas, side by side.

    .venv/bin/python benchmarks/scheduler.py [--jobs 10000] [--nodes 1000] [--repeats 5]
                                             [--trace-hours 72] [--seed 0]

1. Speed: one cycle (veil.sched.schedule) for `--jobs` pending jobs (mixed: fractions, 1-8
   GPUs, multi-process, 10% interactive) from 20 projects on `--nodes` nodes of 8 GPUs; from an
   empty cluster, again on the filled cluster, and a cycle that reclaims (a starved project's
   jobs arrive while others borrow). Target: <= 1 s.
2. Allocation: a discrete-event simulation of the seed's cluster (two nodes of 8 GPUs; team-a
   4, team-b 2, team-c 2, team-d 8) under a synthetic trace: Poisson arrivals per team with
   on/off phases (team-d is often idle, as in the seed), training jobs of 1-4 whole GPUs and
   0.5-6 h, interactive jobs of 0.2-1 GPU and 0.5-3 h. Preempted training jobs resume where
   they stopped (they checkpoint). Reported: time-weighted share of GPUs allocated while demand
   exceeds capacity (target >= 95%), for veil's policy and for FIFO with hard quotas (no
   borrowing, no preemption), run on the same trace.

Writes benchmarks/out/scheduler.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import time
from pathlib import Path

from veil.sched import Cluster, Job, Node, Project, schedule

QUOTAS = {"team-a": 4, "team-b": 2, "team-c": 2, "team-d": 8}
CLUSTERS = {  # name: (nodes of 8 GPUs, {team: (quota, arrivals/h while on)})
    "seed": (2, {"team-a": (4, 0.9), "team-b": (2, 0.6), "team-c": (2, 0.6),
                 "team-d": (8, 0.9)}),
    "large": (8, {f"team-{c}": (q, r) for c, q, r in (
        ("a", 4, 1.8), ("b", 2, 1.2), ("c", 2, 1.2), ("d", 8, 1.8), ("e", 8, 3.0),
        ("f", 12, 4.0), ("g", 12, 4.0), ("h", 16, 5.0))}),
}


def bench_cycle(n_jobs: int, n_nodes: int, repeats: int, seed: int) -> dict:
    rng = random.Random(seed)
    nodes = [Node(f"node-{i:04d}", 8) for i in range(n_nodes)]
    capacity = 8 * n_nodes
    projects = {f"p{i:02d}": Project(f"p{i:02d}", capacity / 20) for i in range(20)}

    def make_jobs(prefix: str, n: int, project=None, start=0):
        out = []
        for k in range(n):
            kind = rng.random()
            if kind < 0.15:
                g, procs = rng.choice([0.2, 0.25, 0.5]), 1
            elif kind < 0.85:
                g, procs = float(rng.choice([1, 1, 2, 4, 8])), 1
            else:
                g, procs = float(rng.choice([1, 2])), rng.choice([2, 4])
            inter = g <= 1 and procs == 1 and rng.random() < 0.1
            p = project or f"p{rng.randrange(19):02d}"  # p19 stays idle at first
            out.append(Job(f"{prefix}{k}", p, g, procs, inter, seq=start + k))
        return out

    results = {}
    for what in ("empty", "filled", "reclaim"):
        times = []
        for _ in range(repeats):
            jobs = make_jobs("j", n_jobs)
            if what in ("filled", "reclaim"):
                schedule(projects, jobs, nodes)  # fill (with borrowing), then time the next
            if what == "reclaim":
                jobs += make_jobs("s", 200, project="p19", start=n_jobs)
            t0 = time.perf_counter()
            cyc = schedule(projects, jobs, nodes)
            times.append(time.perf_counter() - t0)
        results[what] = {"median_s": statistics.median(times), "max_s": max(times),
                         "allocated": sum(cyc.allocated.values()) if what == "empty" else
                         sum(j.total for j in jobs if j.running),
                         "preempted": len(cyc.preempted)}
    results.update(jobs=n_jobs, nodes=n_nodes, gpus=capacity)
    return results


def make_trace(hours: float, seed: int, cluster: str = "seed") -> list[dict]:
    rng = random.Random(seed)
    rates = {t: r for t, (_, r) in CLUSTERS[cluster][1].items()}  # jobs/h while "on"
    trace = []
    for team, rate in rates.items():
        t, on = 0.0, rng.random() < 0.7
        phase_end = rng.expovariate(1 / 8)
        while t < hours:
            if not on:
                t = phase_end
                on, phase_end = True, t + rng.expovariate(1 / (6 if team == "team-d" else 10))
                continue
            t += rng.expovariate(rate)
            if t >= phase_end:
                on, phase_end = False, t + rng.expovariate(1 / (10 if team == "team-d" else 4))
                continue
            if rng.random() < 0.3:
                job = {"gpus": rng.choice([0.2, 0.3, 0.5, 1.0]), "interactive": True,
                       "hours": rng.uniform(0.5, 3)}
            else:
                job = {"gpus": float(rng.choice([1, 1, 2, 2, 4])), "interactive": False,
                       "hours": rng.uniform(0.5, 6)}
            trace.append({"t": t, "project": team, **job})
    trace.sort(key=lambda e: e["t"])
    for i, e in enumerate(trace):
        e["name"] = f"j{i}"
    return trace


def fifo_hard_quota(projects, jobs, nodes) -> None:
    """The baseline: submission order, each project capped at its quota, no borrowing, no
    preemption; the same placement (bin-packing) as veil's."""
    cluster = Cluster(nodes)
    alloc = {p: 0.0 for p in projects}
    for j in jobs:
        if j.running:
            cluster.add(j)
            alloc[j.project] += j.total
    for j in sorted((j for j in jobs if not j.running), key=lambda j: j.seq):
        if alloc[j.project] + j.total > projects[j.project].quota + 1e-9:
            continue
        spot = cluster.fit(j, None)
        if spot is not None:
            j.placement = spot
            cluster.add(j)
            alloc[j.project] += j.total


def simulate(trace: list[dict], policy: str, hours: float, cluster: str = "seed") -> dict:
    n_nodes, teams = CLUSTERS[cluster]
    quotas = {t: q for t, (q, _) in teams.items()}
    projects = {p: Project(p, q) for p, q in quotas.items()}
    nodes = [Node(f"dgx1-{i + 1}", 8) for i in range(n_nodes)]
    capacity = 8.0 * n_nodes
    jobs: dict[str, Job] = {}
    remaining: dict[str, float] = {}
    events = [(e["t"], 0, e["name"], e) for e in trace]
    heapq.heapify(events)
    now, busy_t, busy_alloc, fixed_t, fixed_alloc = 0.0, 0.0, 0.0, 0.0, 0.0
    total_alloc, preemptions, waits, done, refused = 0.0, 0, [], 0, 0
    submitted: dict[str, float] = {}
    started: set[str] = set()

    offered = sorted((e["t"], e["t"] + e["hours"], e["gpus"]) for e in trace)
    bounds = sorted({t for a, b, _ in offered for t in (a, b)})  # offered load changes here
    bi = 0

    def offered_load(t: float) -> float:
        """GPUs the trace asks for at t if every job ran from its arrival: the same window
        for every policy (unlike the policy's own backlog)."""
        return sum(g for a, b, g in offered if a <= t < b)

    def step(until: float) -> None:
        nonlocal now, busy_t, busy_alloc, total_alloc, fixed_t, fixed_alloc
        dt = until - now
        if dt <= 0:
            return
        alloc = sum(j.total for j in jobs.values() if j.running)
        demand = sum(j.total for j in jobs.values())
        total_alloc += alloc * dt
        if demand >= capacity:
            busy_t += dt
            busy_alloc += alloc * dt
        if offered_load(now) >= capacity:
            fixed_t += dt
            fixed_alloc += alloc * dt
        for j in jobs.values():
            if j.running:
                remaining[j.name] -= dt
        now = until

    while events or jobs:
        running = [j for j in jobs.values() if j.running]
        next_end = min((now + remaining[j.name] for j in running), default=float("inf"))
        next_arrival = events[0][0] if events else float("inf")
        while bi < len(bounds) and bounds[bi] <= now + 1e-12:
            bi += 1
        next_bound = bounds[bi] if bi < len(bounds) else float("inf")
        t = min(next_end, next_arrival, next_bound, hours)
        step(t)
        if t >= hours:
            break
        for j in [j for j in jobs.values() if j.running and remaining[j.name] <= 1e-9]:
            del jobs[j.name]
            done += 1
        while events and events[0][0] <= now + 1e-12:
            _, _, name, e = heapq.heappop(events)
            if e["interactive"]:  # as `veil submit` does: interactive jobs must fit the quota
                held = sum(j.total for j in jobs.values()
                           if j.interactive and j.project == e["project"])
                if held + e["gpus"] > quotas[e["project"]] + 1e-9:
                    refused += 1
                    continue
            jobs[name] = Job(name, e["project"], e["gpus"], 1, e["interactive"],
                             seq=int(name[1:]))
            remaining[name] = e["hours"]
            submitted[name] = now
        ordered = sorted(jobs.values(), key=lambda j: j.seq)
        if policy == "veil":
            preemptions += len(schedule(projects, ordered, nodes).preempted)
        else:
            fifo_hard_quota(projects, ordered, nodes)
        for j in ordered:
            if j.running and j.name not in started:
                started.add(j.name)
                waits.append(now - submitted[j.name])
    return {"policy": policy, "cluster": cluster,
            "allocated_while_oversubscribed": busy_alloc / (busy_t * capacity)
            if busy_t else None, "oversubscribed_hours": busy_t,
            "allocated_while_trace_oversubscribed": fixed_alloc / (fixed_t * capacity)
            if fixed_t else None, "trace_oversubscribed_hours": fixed_t,
            "allocated_overall": total_alloc / (hours * capacity), "completed": done,
            "preemptions": preemptions, "refused_interactive": refused,
            "median_wait_h": statistics.median(waits) if waits else None,
            "mean_wait_h": statistics.fmean(waits) if waits else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--trace-hours", type=float, default=72.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/scheduler.json"))
    args = ap.parse_args()

    cyc = bench_cycle(args.jobs, args.nodes, args.repeats, args.seed)
    print(f"[cycle] {args.jobs} pending jobs, {args.nodes} nodes x 8 GPUs, median of "
          f"{args.repeats}:")
    for what in ("empty", "filled", "reclaim"):
        r = cyc[what]
        print(f"  {what:<8} {1e3 * r['median_s']:8.1f} ms (max {1e3 * r['max_s']:.1f} ms), "
              f"{r['allocated']:g} GPUs allocated, {r['preempted']} preempted")
    worst = max(cyc[w]["max_s"] for w in ("empty", "filled", "reclaim"))
    print(f"  slowest cycle {1e3 * worst:.1f} ms: target <= 1 s "
          f"{'MET' if worst <= 1 else 'NOT MET'}")

    traces = {}
    for cl in ("seed", "large"):
        trace = make_trace(args.trace_hours, args.seed, cl)
        rows = [simulate(trace, p, args.trace_hours, cl) for p in ("veil", "fifo-hard-quota")]
        traces[cl] = {"jobs": len(trace), "rows": rows}
        n_nodes, teams = CLUSTERS[cl]
        print(f"\n[trace: {cl}] {len(trace)} jobs over {args.trace_hours:g} h on {n_nodes} x 8 "
              f"GPUs, {len(teams)} teams (quotas {', '.join(str(q) for q, _ in teams.values())})")
        print(f"  {'policy':<16} {'while own backlog > cap':>24} {'while trace > cap':>18} "
              f"{'overall':>8} {'completed':>9} {'preempt/move':>12} {'mean wait h':>11}")
        for r in rows:
            print(f"  {r['policy']:<16} {100 * r['allocated_while_oversubscribed']:17.1f}% "
                  f"({r['oversubscribed_hours']:4.1f} h) "
                  f"{100 * r['allocated_while_trace_oversubscribed']:10.1f}% "
                  f"({r['trace_oversubscribed_hours']:4.1f} h) "
                  f"{100 * r['allocated_overall']:7.1f}% {r['completed']:9d} "
                  f"{r['preemptions']:12d} {r['mean_wait_h']:11.2f}")
        veil = rows[0]["allocated_while_oversubscribed"]
        print(f"  veil: {100 * veil:.1f}% while demand exceeds capacity "
              f"({rows[0]['oversubscribed_hours']:.1f} h of {args.trace_hours:g}): target >= "
              f"95% {'MET' if veil >= 0.95 else 'NOT MET'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cycle": cyc, "traces": traces}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
