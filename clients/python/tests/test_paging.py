"""tasks() pages with next_page_token, against a master with no worker (tasks stay
queued, so the count is exact)."""

from __future__ import annotations

from collections.abc import Callable

from cloudai import TaskStatus
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
