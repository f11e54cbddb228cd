"""The fair-share policy against TR-4858's scenarios (Testing Details for 4.8, 4.9, 4.10):
projects team-a 4, team-b 2, team-c 2, team-d 8 on two nodes of 8 GPUs; one scheduling cycle
after every submission or deletion, as the scheduler runs one on every change."""

from __future__ import annotations

import pytest

from veil.sched import Job, Node, Project, fair_shares, schedule

QUOTAS = {"team-a": 4, "team-b": 2, "team-c": 2, "team-d": 8}


class Sim:
    def __init__(self):
        self.projects = {n: Project(n, q) for n, q in QUOTAS.items()}
        self.nodes = [Node("dgx1-1", 8), Node("dgx1-2", 8)]
        self.jobs: list[Job] = []
        self.preempted: list[str] = []

    def cycle(self):
        c = schedule(self.projects, self.jobs, self.nodes)
        self.preempted += [p.job for p in c.preempted]
        return c

    def submit(self, name, project, gpus, interactive=False):
        self.jobs.append(Job(name, project, gpus, interactive=interactive, seq=len(self.jobs)))
        return self.cycle()

    def delete(self, *names):
        self.jobs = [j for j in self.jobs if j.name not in names]
        return self.cycle()

    def table(self):
        out = {}
        for p in QUOTAS:
            mine = [j for j in self.jobs if j.project == p]
            out[p] = (round(sum(j.total for j in mine if j.running), 6),
                      sorted(j.name for j in mine if not j.running))
        return out

    def job(self, name):
        return next(j for j in self.jobs if j.name == name)


def section_4_8(s: Sim) -> None:
    s.submit("a-1-1-jupyter", "team-a", 1, interactive=True)
    s.submit("a-1-g", "team-a", 1)
    s.submit("a-2-gg", "team-a", 2)
    s.submit("b-1-g06", "team-b", 0.6, interactive=True)
    s.submit("b-2-g04", "team-b", 0.4, interactive=True)
    s.submit("b-3-g", "team-b", 1)
    s.submit("b-4-gg", "team-b", 2)
    s.submit("c-1-g05", "team-c", 0.5, interactive=True)
    s.submit("c-2-g03", "team-c", 0.3, interactive=True)
    s.submit("c-3-g02", "team-c", 0.2, interactive=True)
    s.submit("c-4-gg", "team-c", 2)
    s.submit("c-5-g", "team-c", 1)
    s.submit("d-1-gggg", "team-d", 4)


def section_4_9(s: Sim) -> None:
    s.submit("d-2-gg", "team-d", 2)
    s.submit("d-3-gg", "team-d", 2)


def test_section_4_8_high_utilisation_with_over_quota():
    s = Sim()
    section_4_8(s)
    assert s.table() == {"team-a": (4, []), "team-b": (4, []), "team-c": (4, []),
                         "team-d": (4, [])}
    assert s.preempted == []
    # fractions share GPUs: 0.6 + 0.4 on one, 0.5 + 0.3 + 0.2 on another
    spots = {j.name: j.placement[0] for j in s.jobs}
    assert spots["b-1-g06"] == spots["b-2-g04"]
    assert spots["c-1-g05"] == spots["c-2-g03"] == spots["c-3-g02"]


def test_section_4_9_team_d_reclaims_its_quota():
    s = Sim()
    section_4_8(s)
    section_4_9(s)
    t = s.table()
    assert {p: v[0] for p, v in t.items()} == {"team-a": 4, "team-b": 2, "team-c": 2,
                                               "team-d": 8}
    assert len(t["team-b"][1]) == 1 and len(t["team-c"][1]) == 1  # one job each pending
    assert t["team-a"][1] == [] and t["team-d"][1] == []
    for name in ("b-1-g06", "b-2-g04", "c-1-g05", "c-2-g03", "c-3-g02", "a-1-1-jupyter"):
        assert s.job(name).running and name not in s.preempted  # interactive: never preempted
    assert t["team-b"][1] == ["b-4-gg"] and t["team-c"][1] == ["c-4-gg"]
    assert s.preempted == ["b-4-gg", "c-4-gg"]  # for d-2-gg and d-3-gg, in that order


def test_section_4_10_spare_capacity_follows_the_quotas():
    s = Sim()
    section_4_8(s)
    section_4_9(s)
    s.submit("a-3-gg", "team-a", 2)
    assert s.table()["team-a"] == (4, ["a-3-gg"])  # "1 workload queued"
    s.submit("a-4-gg", "team-a", 2)
    s.submit("b-5-gg", "team-b", 2)
    s.submit("c-6-gg", "team-c", 2)
    t = s.table()
    assert {p: (v[0], len(v[1])) for p, v in t.items()} == {
        "team-a": (4, 2), "team-b": (2, 2), "team-c": (2, 2), "team-d": (8, 0)}
    s.delete("d-1-gggg", "d-2-gg", "d-3-gg")
    t = s.table()
    assert {p: (v[0], len(v[1])) for p, v in t.items()} == {
        "team-a": (8, 0), "team-b": (4, 1), "team-c": (4, 1), "team-d": (0, 0)}


def test_fair_shares_fill_water_by_weight_and_never_past_demand():
    p = {n: Project(n, q) for n, q in QUOTAS.items()}
    assert fair_shares(p, {"team-a": 8, "team-b": 6, "team-c": 6}, 16) == \
        pytest.approx({"team-a": 8, "team-b": 4, "team-c": 4, "team-d": 0})
    assert fair_shares(p, {"team-a": 5, "team-b": 100, "team-c": 1}, 16) == \
        pytest.approx({"team-a": 5, "team-b": 10, "team-c": 1, "team-d": 0})
    p["team-b"].weight = 0  # no borrowing for team-b
    assert fair_shares(p, {"team-b": 100}, 16)["team-b"] == pytest.approx(2)


def test_a_multi_process_job_is_placed_whole_or_not_at_all():
    projects = {"p": Project("p", 16)}
    nodes = [Node("n1", 8), Node("n2", 8)]
    filler = Job("filler", "p", 7, seq=0)
    mpi = Job("mpi", "p", 1, processes=3, seq=1)
    schedule(projects, [filler], nodes)
    jobs = [filler, mpi]
    schedule(projects, jobs, nodes)
    assert mpi.running and len(mpi.placement) == 3
    big = Job("big", "p", 4, processes=2, seq=2)
    jobs.append(big)
    schedule(projects, jobs, nodes)
    assert not big.running and big.placement is None  # 6 free, not 2 x 4: nothing placed
    assert mpi.running and filler.running


def test_consolidation_gathers_scattered_free_gpus():
    """One free GPU on each node and no project above its share: a waiting 2-GPU job gets two
    GPUs on one node by moving a 1-GPU job (restarted elsewhere on the next cycle)."""
    projects = {"a": Project("a", 4), "b": Project("b", 4)}
    nodes = [Node("n1", 4), Node("n2", 4)]
    jobs = [Job("a1", "a", 2, seq=0, placement=[("n1", [0, 1])]),
            Job("a2", "a", 1, seq=1, placement=[("n1", [2])]),
            Job("b1", "b", 3, seq=2, placement=[("n2", [0, 1, 2])]),
            Job("b2", "b", 2, seq=3)]
    c = schedule(projects, jobs, nodes)
    big = jobs[3]
    assert big.running and big.placement[0][0] == "n1"
    assert [p.job for p in c.preempted] == ["a2"]
    moved = jobs[1]
    assert not moved.running and "moved" in moved.reason  # not re-placed in the same cycle
    schedule(projects, jobs, nodes)
    assert moved.running and moved.placement == [("n2", [3])]  # the next cycle restarts it


def test_a_pinned_project_never_loops():
    """Consolidation respects the moved job's own node affinity (this used to loop)."""
    projects = {"p": Project("p", 2, nodes=["n0"])}
    nodes = [Node("n0", 1), Node("n1", 1)]
    jobs = [Job("a", "p", 1, seq=0), Job("b", "p", 1, seq=1)]
    for _ in range(3):
        schedule(projects, jobs, nodes)
    assert [j.running for j in jobs] == [True, False]
    assert all(n == "n0" for j in jobs if j.running for n, _ in j.placement)


def test_equal_submission_orders_do_not_break_the_queue():
    projects = {"p": Project("p", 4)}
    jobs = [Job(f"j{i}", "p", 1) for i in range(6)]  # all seq 0
    schedule(projects, jobs, [Node("n", 4)])
    assert sum(j.running for j in jobs) == 4


def test_no_gpu_is_booked_twice_through_preemptions_and_moves():
    """Random submissions and deletions: per-GPU use never exceeds 1, placements match."""
    import random

    rng = random.Random(3)
    projects = {f"t{i}": Project(f"t{i}", q, nodes=["n0", "n1"] if i == 3 else None)
                for i, q in enumerate((4, 2, 2, 8))}
    nodes = [Node(f"n{i}", 4) for i in range(4)]
    jobs: list[Job] = []
    for step in range(300):
        if jobs and rng.random() < 0.35:
            jobs.remove(rng.choice(jobs))
        else:
            g = rng.choice([0.25, 0.5, 1, 1, 2, 3])
            jobs.append(Job(f"j{step}", rng.choice(list(projects)), g,
                            interactive=g <= 1 and rng.random() < 0.2, seq=step))
        schedule(projects, jobs, nodes)
        use = {(n.name, g): 0.0 for n in nodes for g in range(n.gpus)}
        for j in jobs:
            for n, gpus in j.placement or []:
                for g in gpus:
                    use[(n, g)] += j.gpus if j.gpus < 1 else 1.0
        assert max(use.values()) <= 1 + 1e-9, step
        for j in jobs:
            if j.running and projects[j.project].nodes:
                assert all(n in projects[j.project].nodes for n, _ in j.placement)
