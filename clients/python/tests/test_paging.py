"""tasks() pages with next_page_token, against a master with no worker (tasks stay
queued, so the count is exact)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloudai import InvalidArgument, TaskStatus
from conftest import Master


def test_tasks_pages_across_many_pages(master: Callable[..., Master]) -> None:
    m = master()
    with m.client() as c:
        ids = [r.id for r in c.enqueue_many([{"image": "cloudai/fake:test"}] * 120)]
        assert len(set(ids)) == 120

        pages = []
        real = c._t.call

        def counting(fn, *, idempotent):  # type: ignore[no-untyped-def]
            result = real(fn, idempotent=idempotent)
            if hasattr(result, "next_page_token"):
                pages.append(len(result.tasks))
            return result

        c._t.call = counting  # type: ignore[method-assign]
        listed = list(c.tasks(page_size=50))
        assert pages == [50, 50, 20]
        assert sorted(t.id for t in listed) == sorted(ids)
        # Newest first (ids are UUIDv7, ordered by creation).
        assert [t.id for t in listed] == sorted(ids, reverse=True)
        assert all(t.status is TaskStatus.QUEUED for t in listed)

        pages.clear()
        assert [t.id for t in c.tasks(page_size=50, limit=70)] == sorted(ids, reverse=True)[:70]
        assert pages == [50, 20]

        # The master's default page, and filters applied before paging.
        assert len(list(c.tasks())) == 120
        assert len(list(c.tasks(status="queued", page_size=7))) == 120
        assert list(c.tasks(status="succeeded")) == []
        # A lazy iterator: taking a few fetches one page.
        pages.clear()
        it = c.tasks(page_size=10)
        first = [next(it) for _ in range(3)]
        assert len(first) == 3 and pages == [10]


def test_tasks_searches_by_image_labels_text_and_time(master: Callable[..., Master]) -> None:
    m = master()
    with m.client() as c:
        a = c.enqueue("cloudai/fake:test", command=["echo", "Hello"], labels={"team": "ml"})
        b = c.enqueue("cloudai/other:1", command=["train"], labels={"team": "ml", "env": "prod"})
        d = c.enqueue("elsewhere/image:2", command=["say", "HELLO"])
        created = {t.id: t.created_at for t in c.tasks()}
        assert [t.id for t in c.tasks(image="cloudai/*", oldest_first=True)] == [a.id, b.id]
        assert [t.id for t in c.tasks(image="cloudai/fake:test")] == [a.id]
        assert [t.id for t in c.tasks(labels={"team": "ml", "env": "prod"})] == [b.id]
        assert [t.id for t in c.tasks(text="hello")] == [d.id, a.id]
        since = created[b.id]
        assert since is not None
        assert [t.id for t in c.tasks(since=since)] == [d.id, b.id]
        assert [t.id for t in c.tasks(until=since)] == [a.id]
        with pytest.raises(InvalidArgument, match="timezone-aware"):
            list(c.tasks(since=since.replace(tzinfo=None)))
