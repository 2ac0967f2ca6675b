"""LearnedAgent's model and plan, and the agent's pure parts: no processes."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from cloudai import TaskSpec
from cloudai.agent import Backoff, Capacity, Placer, QueuedTask, Refusal
from cloudai.learned import (
    Candidate,
    Prediction,
    Reservation,
    Running,
    RunStats,
    RuntimeModel,
    is_large,
    order,
    plan,
    room_at,
    task_key,
)

GB = 1 << 30
NOW = 1_000_000.0


def cap(cpu: float, mem_gb: float = 4, gpus: int = 0) -> Capacity:
    return Capacity(round(cpu * 1000), round(mem_gb * GB), gpus)


def cand(
    id: str,
    cpu: float,
    run: float,
    *,
    age: float = 1.0,
    known: bool = True,
    std: float = 0.0,
    priority: int = 0,
    mem_gb: float = 0.25,
    pin: str | None = None,
) -> Candidate:
    q = QueuedTask(id, cap(cpu, mem_gb), priority, pin, "img", 0)
    return Candidate(q, NOW - age, Prediction(run, std, 5 if known else 0, known))


def placed(p: object) -> list[tuple[str, str]]:
    return [(a.task_id, a.worker_id) for a in p.assignments]  # type: ignore[attr-defined]


# ---- the model -------------------------------------------------------------------------


def test_welford_matches_mean_and_sample_spread() -> None:
    xs = [random.Random(7).lognormvariate(0, 1) for _ in range(500)]
    s = RunStats()
    for x in xs:
        s.add(x)
    assert s.n == 500
    assert s.mean == pytest.approx(statistics.fmean(xs), rel=1e-12)
    assert s.std == pytest.approx(statistics.stdev(xs), rel=1e-9)
    one = RunStats()
    one.add(3.0)
    assert (one.mean, one.std) == (3.0, 0.0)


def test_model_per_kind_and_fallbacks() -> None:
    m = RuntimeModel(default_runtime=42.0)
    # Nothing seen: the configured default, not known.
    assert m.predict("a") == Prediction(42.0, 0.0, 0, False)
    for x in (1.0, 2.0, 3.0):
        m.observe("a", x)
    m.observe("b", 10.0)
    pa = m.predict("a")
    assert (pa.mean, pa.std, pa.samples, pa.known) == (2.0, 1.0, 3, True)
    assert m.predict("b").mean == 10.0
    # Unseen kind: the mean and spread of every run.
    pc = m.predict("c")
    assert not pc.known and pc.mean == pytest.approx(4.0)
    assert pc.std == pytest.approx(statistics.stdev([1, 2, 3, 10]))
    # fallback="default" keeps the default for unseen kinds; min_samples gates a kind.
    d = RuntimeModel(default_runtime=5.0, fallback="default", min_samples=2)
    d.observe("a", 100.0)
    assert d.predict("a") == Prediction(5.0, 0.0, 1, False)
    d.observe("a", 200.0)
    assert d.predict("a").mean == 150.0 and d.predict("a").known
    with pytest.raises(ValueError):
        RuntimeModel(fallback="median")


def test_task_key_is_image_and_command_or_the_named_label() -> None:
    a = TaskSpec.of("img:1", command=["sh", "-c", "echo hi"], labels={"cloudai.kind": "etl"})
    b = TaskSpec.of("img:1", command=["sh", "-c", "echo ho"])
    assert task_key(a) != task_key(b)
    assert task_key(a) == "img:1 sh -c 'echo hi'"
    assert task_key(a, "cloudai.kind") == "cloudai.kind=etl"
    # Without the label: image and command.
    assert task_key(b, "cloudai.kind") == task_key(b)


# ---- the plan --------------------------------------------------------------------------


def test_order_is_priority_then_shortest_predicted_with_aging() -> None:
    cs = [
        cand("long", 1, 30.0, age=5),
        cand("short", 1, 1.0, age=1),
        cand("mid", 1, 5.0, age=2),
        cand("urgent", 1, 100.0, priority=3),
        cand("old", 1, 50.0, age=500),  # queued past starve_after: ahead of shorter ones
    ]
    ids = [c.task.id for c in order(cs, NOW, starve_after=120.0)]
    assert ids == ["urgent", "old", "short", "mid", "long"]
    # Equal predictions: oldest first.
    ties = [cand("young", 1, 2.0, age=1), cand("elder", 1, 2.0, age=9)]
    assert [c.task.id for c in order(ties, NOW, 120.0)] == ["elder", "young"]


def test_fits_by_cpu_memory_and_gpus_without_over_committing() -> None:
    placer = Placer.of({"w1": cap(4, 8), "w2": cap(2, 8, gpus=1)})
    cs = [cand(f"t{i}", 1, 1.0 + i) for i in range(8)]  # 8 × 1 CPU on 6 CPUs
    cs.append(cand("gpu", 0.5, 0.5, mem_gb=1))
    cs[-1] = Candidate(
        QueuedTask("gpu", cap(0.5, 1, gpus=1), 0, None, "img", 0), NOW, Prediction(0.5, 0, 3, True)
    )
    cs.append(cand("fat", 0.1, 0.1, mem_gb=9))  # more memory than any worker
    p = plan(placer, cs, {}, NOW, large_fraction=0.9)
    got = placed(p)
    assert ("gpu", "w2") in got
    assert "fat" not in [t for t, _ in got]
    per = {"w1": 0, "w2": 0}
    for t, w in got:
        per[w] += 1000 if t != "gpu" else 500
    assert per["w1"] <= 4000 and per["w2"] <= 2000
    # Shortest first: the five shortest 1-CPU tasks got the room (4 on w1, 1 beside the GPU task).
    assert sorted(t for t, _ in got if t.startswith("t")) == ["t0", "t1", "t2", "t3", "t4"]
    assert placer.free["w1"].cpu_millis == 0 and placer.free["w2"].cpu_millis == 500


def test_pins_are_respected() -> None:
    placer = Placer.of({"a": cap(4), "b": cap(4)})
    p = plan(placer, [cand("p", 1, 1.0, pin="b"), cand("q", 1, 1.0, pin="zz")], {}, NOW)
    assert placed(p) == [("p", "b")]


def test_oldest_large_task_goes_first_when_it_fits() -> None:
    placer = Placer.of({"w1": cap(4), "w2": cap(4)}, {"w1": cap(4), "w2": cap(1)})
    cs = [cand(f"s{i}", 1, 0.5) for i in range(4)] + [cand("big", 4, 2.0, age=3)]
    p = plan(placer, cs, {}, NOW)
    got = placed(p)
    assert got[0] == ("big", "w1")
    assert p.reservation is None
    assert [t for t, w in got if w == "w2"] == ["s0"]


def test_reservation_for_the_oldest_large_task_with_backfill_before_it() -> None:
    # w1 has 1 CPU free, its 3 others end at NOW+10; w2 is full until NOW+100.
    placer = Placer.of({"w1": cap(4), "w2": cap(4)}, {"w1": cap(1), "w2": cap(0.5)})
    running = {
        "w1": [Running(cap(3, 0), NOW + 10)],
        "w2": [Running(cap(3.5, 0), NOW + 100)],
    }
    cs = [
        cand("big-new", 4, 10.0, age=1),
        cand("big-old", 4, 10.0, age=20),
        cand("quick", 1, 2.0, std=1.0),  # ends by NOW+4 ≤ NOW+10: may use w1
        cand("slow", 1, 20.0),  # would delay big-old: kept off w1
        cand("unseen", 0.5, 1.0, known=False),  # no history: not trusted to backfill
    ]
    p = plan(placer, cs, running, NOW, backfill_sigma=2.0)
    assert p.reservation == Reservation("big-old", "w1", NOW + 10)
    got = placed(p)
    assert ("quick", "w1") in got
    assert all(w != "w1" for t, w in got if t != "quick")
    assert ("unseen", "w2") in got  # w2 has 0.5 CPU free
    assert "slow" not in [t for t, _ in got] and "big-new" not in [t for t, _ in got]


def test_reservation_is_kept_across_rounds_and_unknown_ends_block_backfill() -> None:
    placer = Placer.of({"w1": cap(4), "w2": cap(4)}, {"w1": cap(2), "w2": cap(3)})
    prev = Reservation("big", "w1", math.inf)
    cs = [cand("big", 4, 5.0, age=9), cand("s", 1, 0.1)]
    p = plan(placer, cs, {}, NOW, previous=prev)
    # w2 has more room (it would be chosen afresh), but the reservation stays on w1;
    # nothing is known of w1's running tasks, so no backfill there.
    assert p.reservation == Reservation("big", "w1", math.inf)
    assert placed(p) == [("s", "w2")]
    fresh = plan(Placer.of({"w1": cap(4), "w2": cap(4)}, {"w1": cap(2), "w2": cap(3)}), cs, {}, NOW)
    assert fresh.reservation is not None and fresh.reservation.worker_id == "w2"


def test_a_large_task_takes_its_turn_until_it_has_waited_its_run_time() -> None:
    def round(age: float, **kw: float) -> tuple[list[tuple[str, str]], object]:
        placer = Placer.of({"w1": cap(4), "w2": cap(4)}, {"w1": cap(4), "w2": cap(2)})
        cs = [cand(f"s{i}", 1, 0.5) for i in range(4)] + [cand("big", 4, 5.0, age=age)]
        p = plan(placer, cs, {}, NOW, **kw)
        return placed(p), p.reservation

    # Young: shortest first; the shorts fill w2, then w1; the large one fits no more, and
    # gets no reservation yet.
    got, res = round(age=2)
    assert "big" not in [t for t, _ in got] and res is None
    # Waited its predicted run time (5 s): it goes first.
    got, res = round(age=6)
    assert got[0] == ("big", "w1") and res is None
    # A fixed patience instead of the prediction.
    got, _ = round(age=2, reserve_after=1.0)
    assert got[0] == ("big", "w1")


def test_large_and_room_at() -> None:
    biggest = cap(8, 32, gpus=2)
    assert is_large(cap(4, 1), biggest, 0.5)
    assert is_large(cap(0.1, 16), biggest, 0.5)
    assert is_large(cap(0.1, 1, gpus=1), biggest, 0.5)
    assert not is_large(cap(3.9, 15), biggest, 0.5)
    rs = [Running(cap(1, 0), NOW + 5), Running(cap(2, 0), NOW + 2)]
    assert room_at(cap(1), cap(1), rs, NOW) == NOW
    assert room_at(cap(3), cap(1), rs, NOW) == NOW + 2
    assert room_at(cap(4), cap(1), rs, NOW) == NOW + 5
    assert room_at(cap(5), cap(1), rs, NOW) == math.inf
    # A task overrunning its prediction frees room "now", not in the past.
    assert room_at(cap(2), cap(1), [Running(cap(1, 0), NOW - 9)], NOW) == NOW


# ---- refusals and backoff ----------------------------------------------------------------


@pytest.mark.parametrize(
    "reason, code",
    [
        ("task is running, not queued", Refusal.NOT_QUEUED),
        ("task is not queued: it is being assigned already", Refusal.NOT_QUEUED),
        ("request does not fit the free capacity of w1", Refusal.DOES_NOT_FIT),
        ("worker w9 is not healthy and connected", Refusal.WORKER_UNAVAILABLE),
        ('unknown worker "w9"', Refusal.WORKER_UNAVAILABLE),
        ("task is pinned to worker w2", Refusal.PINNED_ELSEWHERE),
        ("task is waiting for its retry backoff", Refusal.RETRY_BACKOFF),
        ("task 0199 not found", Refusal.NOT_FOUND),
        ("sqlite store error: database is locked", Refusal.TRANSIENT),
        ("something new", Refusal.UNKNOWN),
    ],
)
def test_refusals_are_classified(reason: str, code: Refusal) -> None:
    assert Refusal.classify(reason) is code


def test_backoff_grows_with_full_jitter_and_resets() -> None:
    b = Backoff(0.1, 2.0, random.Random(1))
    delays = [b.next() for _ in range(12)]
    assert all(0 <= d <= min(2.0, 0.1 * 2**i) for i, d in enumerate(delays))
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.1


def test_refusals_are_read_from_their_code_first() -> None:
    from cloudai._pb import agent_pb2 as a
    # The code decides, whatever the words say.
    assert Refusal.of(a.ASSIGNMENT_CODE_IN_BACKOFF, "does not fit") is Refusal.RETRY_BACKOFF
    assert Refusal.of(a.ASSIGNMENT_CODE_HELD_BY_DISPATCHER, "") is Refusal.NOT_QUEUED
    assert Refusal.of(a.ASSIGNMENT_CODE_CONSTRAINT_UNMET, "") is Refusal.CONSTRAINT_UNMET
    assert Refusal.of(a.ASSIGNMENT_CODE_UNAVAILABLE, "") is Refusal.TRANSIENT
    # A master that sends no code: the words.
    assert Refusal.of(a.ASSIGNMENT_CODE_UNSPECIFIED, "task is queued, not queued") is Refusal.NOT_QUEUED
    assert Refusal.of(a.ASSIGNMENT_CODE_UNSPECIFIED, "???") is Refusal.UNKNOWN


# ---- constraints and preferences in the placer -----------------------------------------


def test_placer_matches_constraints_and_ranks_preferences_as_the_master_does() -> None:
    from cloudai._pb import agent_pb2, types_pb2
    from cloudai.agent import Constraint, Preference
    from cloudai.scheduling import Op

    # The wire form, as FetchClusterState sends it.
    wire = agent_pb2.QueuedTask(
        task_id="t1",
        request=types_pb2.Resources(cpu_millis=500, memory_bytes=GB),
        constraints=[
            types_pb2.Constraint(key="zone", op=types_pb2.CONSTRAINT_OP_IN, values=["a", "b"]),
            types_pb2.Constraint(key="disk", op=types_pb2.CONSTRAINT_OP_NE, values=["hdd"]),
        ],
        prefer=[types_pb2.Preference(key="rack", value="r2")],
    )
    q = QueuedTask.from_pb(wire, 0)
    assert [c.op.value for c in q.constraints] == ["in", "!="]
    attrs = {
        "a-hdd": {"zone": "a", "disk": "hdd"},
        "a-r1": {"zone": "a", "rack": "r1"},  # no disk: != holds
        "b-r2": {"zone": "b", "rack": "r2", "disk": "ssd"},
        "c-r2": {"zone": "c", "rack": "r2"},
        "none": {},  # no zone: `in` fails
    }
    placer = Placer.of({w: cap(4) for w in attrs}, attributes=attrs)
    assert placer.candidates(q) == ["a-r1", "b-r2"]
    # The preferred worker goes first though a-r1 sorts before it...
    assert placer.first_fit(q).worker_id == "b-r2"  # type: ignore[union-attr]
    # ...until it is full: then the other candidate, never a worker that fails.
    placer.free["b-r2"] = cap(0.25)
    assert placer.best_fit(q).worker_id == "a-r1"  # type: ignore[union-attr]
    placer.free["a-r1"] = cap(0.25)
    assert placer.best_fit(q) is None
    assert not Constraint("gpu.model", Op.EXISTS).matches({})
    assert Constraint("zone", Op.NOT_IN, ("c",)).matches({})
    assert Preference("zone", "a").matches({"zone": "a"})
