"""The client's calls against a real master and a fake-executor worker (``cluster``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

import cloudai
from cloudai import LogStream, TaskSpec, TaskStatus
from conftest import Master, eventually

IMAGE = "cloudai/fake:test"
#: Longest wait for a task to end.
QUICK_WAIT = 30.0


def fake(
    run_ms: int = 10, exit_code: int = 0, stdout: str = "", stderr: str = ""
) -> dict[str, str]:
    """The env that makes a fake container behave so."""
    env = {"CLOUDAI_FAKE_RUN_MS": str(run_ms), "CLOUDAI_FAKE_EXIT_CODE": str(exit_code)}
    if stdout:
        env["CLOUDAI_FAKE_STDOUT"] = stdout
    if stderr:
        env["CLOUDAI_FAKE_STDERR"] = stderr
    return env


def test_enqueue_then_wait_succeeds_with_the_spec_as_given(client: cloudai.Client) -> None:
    before = datetime.now(timezone.utc)
    task = client.enqueue(
        IMAGE,
        command=["run", "--fast"],
        entrypoint="/bin/job",
        env=fake(),
        cpu=0.5,
        memory="256M",
        priority=3,
        retries=2,
        timeout=timedelta(minutes=5),
        labels={"team": "ml"},
    )
    # Read back right after the enqueue: queued, or already picked up by the worker.
    assert task.status in (TaskStatus.QUEUED, TaskStatus.ASSIGNED, TaskStatus.RUNNING,
                           TaskStatus.SUCCEEDED)
    assert task.created_at is not None and task.created_at >= before - timedelta(seconds=5)
    s = task.spec
    assert (s.image, s.command, s.entrypoint) == (IMAGE, ("run", "--fast"), ("/bin/job",))
    assert (s.cpu, s.memory, s.gpus, s.priority, s.retries) == (0.5, 256 << 20, 0, 3, 2)
    assert s.timeout == timedelta(minutes=5)
    assert dict(s.labels) == {"team": "ml"} and s.env["CLOUDAI_FAKE_RUN_MS"] == "10"

    done = client.wait(task.id, timeout=QUICK_WAIT)
    assert done.status is TaskStatus.SUCCEEDED and done.status == "succeeded"
    assert done.ended and done.exit_code == 0 and done.error is None
    assert done.worker == "w1"
    assert done.finished_at is not None and done.finished_at >= task.created_at
    (a,) = done.attempts
    assert (a.number, a.worker, a.outcome, a.exit_code) == (1, "w1", TaskStatus.SUCCEEDED, 0)
    assert a.started_at is not None and a.finished_at is not None
    # A prefix of the id finds it too.
    assert client.get(task.id[:13]).id == task.id


def test_a_failing_task_has_its_exit_code(client: cloudai.Client) -> None:
    task = client.enqueue(IMAGE, env=fake(exit_code=3))
    done = client.wait(task.id, timeout=QUICK_WAIT)
    assert done.status is TaskStatus.FAILED
    assert done.exit_code == 3 and done.attempts[-1].exit_code == 3


def test_logs_are_lines_with_their_stream_and_time(client: cloudai.Client) -> None:
    task = client.enqueue(IMAGE, env=fake(stdout="one\ntwo words\nthree", stderr="oops"))
    client.wait(task.id, timeout=QUICK_WAIT)
    lines = list(client.logs(task.id))
    assert [(l.text, l.stream) for l in lines] == [
        ("one", LogStream.STDOUT),
        ("two words", LogStream.STDOUT),
        ("three", LogStream.STDOUT),
        ("oops", LogStream.STDERR),
    ]
    assert all(isinstance(l.time, datetime) and l.time.tzinfo is not None for l in lines)
    assert all(l.attempt == 1 for l in lines)
    assert [l.seq for l in lines] == sorted(l.seq for l in lines)
    assert [l.text for l in client.logs(task.id, stdout=False)] == ["oops"]
    assert [l.text for l in client.logs(task.id, stderr=False)] == ["one", "two words", "three"]
    assert list(client.logs(task.id, attempt=2)) == []
    with pytest.raises(cloudai.InvalidArgument):
        client.logs(task.id, stdout=False, stderr=False)


def test_follow_yields_lines_while_the_task_runs_and_stops_when_it_ends(
    client: cloudai.Client,
) -> None:
    # The fake writes its output at start, then runs for 3 s.
    task = client.enqueue(IMAGE, env=fake(run_ms=3000, stdout="first\nsecond"))
    seen = []
    for line in client.logs(task.id, follow=True):
        # Each line arrives while the task still runs, not after it ended.
        seen.append((line.text, client.get(task.id).status))
    assert seen == [("first", TaskStatus.RUNNING), ("second", TaskStatus.RUNNING)]
    # The stream ended because the task did.
    assert client.get(task.id).status is TaskStatus.SUCCEEDED


def test_follow_can_be_stopped_early(client: cloudai.Client) -> None:
    task = client.enqueue(IMAGE, env=fake(run_ms=60_000, stdout="hello"))
    lines = client.logs(task.id, follow=True)
    assert next(lines).text == "hello"
    lines.close()  # ends the stream, not the task
    assert client.get(task.id).status is TaskStatus.RUNNING
    client.cancel(task.id)
    assert client.wait(task.id, timeout=QUICK_WAIT).status is TaskStatus.CANCELLED


def test_cancel_stops_a_running_task(client: cloudai.Client) -> None:
    task = client.enqueue(IMAGE, env=fake(run_ms=60_000))
    eventually("the task to run", lambda: client.get(task.id).status is TaskStatus.RUNNING)
    # Not ended yet: it cannot be retried.
    with pytest.raises(cloudai.FailedPrecondition):
        client.retry(task.id)
    after = client.cancel(task.id)
    assert after.id == task.id
    assert after.cancel_requested or after.status is TaskStatus.CANCELLED
    done = client.wait(task.id, timeout=QUICK_WAIT)
    assert done.status is TaskStatus.CANCELLED
    with pytest.raises(cloudai.FailedPrecondition) as e:
        client.cancel(task.id)
    assert e.value.code is not None and e.value.code.name == "FAILED_PRECONDITION"


def test_retry_makes_a_new_task_linked_to_the_old(client: cloudai.Client) -> None:
    old = client.wait(client.enqueue(IMAGE, env=fake(exit_code=1)).id, timeout=QUICK_WAIT)
    assert old.status is TaskStatus.FAILED
    new = client.retry(old.id)
    assert new.id != old.id
    assert new.retry_of == old.id and new.labels[cloudai.RETRY_OF_LABEL] == old.id
    assert new.spec.env == old.spec.env and new.spec.image == old.spec.image
    assert client.wait(new.id, timeout=QUICK_WAIT).status is TaskStatus.FAILED
    # The old task is left as it was.
    assert client.get(old.id).status is TaskStatus.FAILED


def test_wait_times_out_with_the_task_as_last_seen(client: cloudai.Client) -> None:
    task = client.enqueue(IMAGE, env=fake(run_ms=60_000))
    with pytest.raises(TimeoutError) as e:
        client.wait(task.id, timeout=0.3)
    assert isinstance(e.value, cloudai.WaitTimeout)
    assert e.value.task.id == task.id and not e.value.task.ended
    client.cancel(task.id)


def test_enqueue_many_takes_dicts_and_specs(client: cloudai.Client) -> None:
    key = f"batch-{uuid.uuid4()}"
    results = client.enqueue_many(
        [
            {"image": IMAGE, "env": fake(), "memory": 1 << 20},
            TaskSpec.of(IMAGE, env=fake(exit_code=2), idempotency_key=key),
        ]
    )
    assert [r.created for r in results] == [True, True]
    a, b = (client.wait(r.id, timeout=QUICK_WAIT) for r in results)
    assert (a.status, a.spec.memory) == (TaskStatus.SUCCEEDED, 1 << 20)
    assert (b.status, b.exit_code, b.spec.idempotency_key) == (TaskStatus.FAILED, 2, key)
    # The same key again: the first task, not a new one.
    again = client.enqueue_many([TaskSpec.of(IMAGE, env=fake(exit_code=2), idempotency_key=key)])
    assert [(r.id, r.created) for r in again] == [(b.id, False)]
    assert client.enqueue(IMAGE, env=fake(exit_code=2), idempotency_key=key).id == b.id
    assert client.enqueue_many([]) == []
    with pytest.raises(cloudai.InvalidArgument):
        client.enqueue_many([{"image": IMAGE, "no_such_field": 1}])


def test_an_array_runs_each_index_once_and_is_counted(client: cloudai.Client) -> None:
    a = client.enqueue_array({"image": IMAGE, "env": fake()}, "0-4:2,9%2")
    assert (a.size, a.created, a.max_running) == (4, 4, 2)

    def done() -> dict[TaskStatus, int] | None:
        c = client.array_counts(a.id)
        return c if c.get(TaskStatus.SUCCEEDED) == 4 else None

    eventually("all four to succeed", done, timeout=QUICK_WAIT)
    elements = client.tasks(labels={"cloudai.array": a.id}, limit=10)
    assert sorted(int(t.spec.env["CLOUDAI_ARRAY_INDEX"]) for t in elements) == [0, 2, 4, 9]
    assert client.get(a.first_task_id).spec.env["CLOUDAI_ARRAY_INDEX"] == "0"
    with pytest.raises(cloudai.InvalidArgument) as e:
        client.enqueue_array({"image": IMAGE}, "9-3")
    assert "ends before it starts" in str(e.value)
    with pytest.raises(cloudai.NotFound):
        client.array_counts(str(uuid.uuid4()))


def test_workers_and_stats(client: cloudai.Client) -> None:
    client.wait(client.enqueue(IMAGE, env=fake()).id, timeout=QUICK_WAIT)
    (w,) = [w for w in client.workers() if w.id == "w1"]
    assert w.health is cloudai.WorkerHealth.HEALTHY
    assert w.capacity.cpu > 0 and w.capacity.memory > 0
    assert w.free.cpu <= w.capacity.cpu
    assert w.last_heartbeat is not None and w.version
    assert not w.cordoned and w.drain_deadline is None
    stats = client.stats()
    assert stats["succeeded"] >= 1
    assert stats[TaskStatus.SUCCEEDED] == stats.counts[TaskStatus.SUCCEEDED]
    assert set(stats.counts) == {s for s in TaskStatus if s is not TaskStatus.UNKNOWN}
    assert stats.total == sum(stats.counts.values())
    assert stats.finished_last_minute >= 1


def test_tasks_filter_by_status_and_worker(client: cloudai.Client, cluster: Master) -> None:
    t = client.wait(client.enqueue(IMAGE, env=fake(exit_code=4)).id, timeout=QUICK_WAIT)
    failed = [x.id for x in client.tasks(status="failed")]
    assert t.id in failed
    assert all(x.status is TaskStatus.FAILED for x in client.tasks(status=[TaskStatus.FAILED]))
    assert t.id in [x.id for x in client.tasks(status="failed,succeeded", worker="w1")]
    assert t.id not in [x.id for x in client.tasks(status="succeeded")]
    assert list(client.tasks(worker="no-such-worker")) == []
    with pytest.raises(cloudai.InvalidArgument):
        client.tasks(status="finished")


def test_enqueue_after_waits_for_the_parent_and_not_before_holds_a_task(
    master: Callable[..., Master],
) -> None:
    m = master()
    with m.client() as c:
        parent = c.enqueue("cloudai/fake:test")
        child = c.enqueue("cloudai/fake:test", after=[parent.id[:13]])
        on_fail = c.enqueue("cloudai/fake:test", after=[(parent.id, "notok")])
        assert child.status is TaskStatus.WAITING
        assert child.spec.after == ((parent.id, "ok"),)
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        held = c.enqueue("cloudai/fake:test", not_before=later)
        assert held.spec.not_before is not None
        assert abs((held.spec.not_before - later).total_seconds()) < 0.001
        c.cancel(parent.id)
        assert c.wait(child.id, timeout=30).status is TaskStatus.CANCELLED
        assert c.get(child.id).error == f"dependency {parent.id} ended cancelled"
        # `notok` holds for a cancelled parent: released (no worker here, so it queues).
        eventually(
            "the notok child to be released",
            lambda: c.get(on_fail.id).status is TaskStatus.QUEUED,
        )
        with pytest.raises(cloudai.InvalidArgument, match="condition"):
            c.enqueue("cloudai/fake:test", after=[(parent.id, "maybe")])
        with pytest.raises(cloudai.InvalidArgument, match="after"):
            c.enqueue("cloudai/fake:test", after=["ffffffff-0000"])


def test_constraints_steer_warn_and_strict_refuses(master: Callable[..., Master]) -> None:
    m = master()
    m.start_worker("wz", "--labels", "zone=a,rack=r1")
    with m.client() as c:
        t = c.enqueue(IMAGE, constraints=["zone in (a,b)", "disk!=hdd"], prefer=["rack=r1"])
        assert [str(x) for x in t.spec.constraints] == ["zone in (a,b)", "disk!=hdd"]
        assert [str(x) for x in t.spec.prefer] == ["rack=r1"]
        done = c.wait(t.id, timeout=30)
        assert done.status is cloudai.TaskStatus.SUCCEEDED
        assert done.attempts[-1].worker == "wz"

        with pytest.warns(cloudai.UnplaceableWarning, match="closest worker wz lacks zone=b"):
            never = c.enqueue(IMAGE, constraints=["zone=b"])
        assert never.status is cloudai.TaskStatus.QUEUED
        before = len(list(c.tasks()))
        with pytest.raises(cloudai.FailedPrecondition, match="strict"):
            c.enqueue(IMAGE, constraints=["zone=b"], strict=True)
        with pytest.raises(cloudai.FailedPrecondition):
            c.enqueue_array({"image": IMAGE, "constraints": ["zone=b"]}, "0-2", strict=True)
        assert len(list(c.tasks())) == before, "a strict refusal stores nothing"
        with pytest.warns(cloudai.UnplaceableWarning):
            arr = c.enqueue_array({"image": IMAGE, "constraints": ["zone=b"]}, "0-2")
        assert arr.created == 3 and arr.warning and "zone=b" in arr.warning
        # A malformed expression fails before any call, naming the forms.
        with pytest.raises(cloudai.InvalidArgument, match="KEY in"):
            c.enqueue(IMAGE, constraints=["zone in a,b"])
