"""The dashboard in headless Chromium, as a person uses it: driven by cli/tests/dashboard.rs,
which starts a master with auth on and fake-executor workers, enqueues the tasks named
here, and answers the handshake below. Every wait is on a condition (Playwright's expect),
never a fixed sleep. Screenshots go to $CLOUDAI_SCREENSHOTS (default: a new temp dir),
whose path is printed first.

    python dashboard.py --url URL --token ADMIN --viewer-token VIEWER \
        --succeeded ID --failed ID --train ID --eval ID --long ID --live ID \
        --worker W1 --late-worker W2

It prints "ready: the live task's page is open" once the page of the live task (queued: no
worker can fit it yet) follows its empty log; the driver then starts the worker that runs
it, and the script sees the lines arrive. It prints "retried as: ID" for the driver to
check the retry.

Chromium is Debian's (/usr/bin/chromium, or $CLOUDAI_CHROMIUM): Playwright's own browser
download is never used.
"""

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

WAIT_MS = 60_000
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TOKEN_KEY = "cloudai.token"


def say(msg):
    print(msg, flush=True)


class Run:
    def __init__(self, args, browser, shots):
        self.args = args
        self.url = args.url.rstrip("/")
        self.browser = browser
        self.shots = shots
        self.problems = []

    def page(self, viewport=LAPTOP, mobile=False, scheme="light", token=None):
        ctx = self.browser.new_context(
            viewport=viewport, is_mobile=mobile, has_touch=mobile, color_scheme=scheme, accept_downloads=True
        )
        if token:
            # As if logged in already (the token lives in the tab's session storage).
            ctx.add_init_script(f"sessionStorage.setItem({TOKEN_KEY!r}, {token!r})")
        page = ctx.new_page()
        # Uncaught exceptions and CSP refusals fail the run; a refused fetch (401 before
        # the login) is the browser reporting an answer the page handles.
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: m.type == "error"
            and "Content Security Policy" in m.text
            and self.problems.append(f"console: {m.text}"),
        )
        return page

    def shot(self, page, name):
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        say(f"screenshot: {path}")

    def fits_the_screen(self, page, what):
        over = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if over > 1:
            self.problems.append(f"{what}: wider than the screen by {over}px")

    def check(self, ok, what):
        if not ok:
            self.problems.append(what)


def count(page, status):
    return page.locator(f'[data-count="{status}"] .n')


def status_of(page):
    return page.locator("#task-status [data-status]")


def rows(page):
    return page.locator("#task-list tbody tr")


def row_ids(page):
    return rows(page).evaluate_all("rs => rs.map(r => r.dataset.id)")


def login(run, page, token, who):
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login")).to_be_hidden(timeout=WAIT_MS)
    expect(page.locator("#whoami")).to_contain_text(who)


def overview(run, page):
    a = run.args
    page.goto(f"{run.url}/")
    expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#main")).to_be_hidden()
    expect(page.locator("#logout")).to_be_hidden()
    run.shot(page, "login")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("That token did not work")
    login(run, page, a.token, "ada")
    expect(page.locator("#whoami")).to_contain_text("admin")
    expect(page.locator("#logout")).to_be_visible()
    expect(page).to_have_title("Overview · cloudai")
    for status, n in [("succeeded", 3), ("failed", 1), ("running", 1), ("queued", 4), ("all", 9)]:
        expect(count(page, status)).to_have_text(str(n), timeout=WAIT_MS)
    expect(page.locator('[data-count="failed"]')).to_contain_text("failed")
    expect(page.locator(f'tr[data-id="{a.worker}"]')).to_contain_text("healthy")
    failure = page.locator(f'tr[data-id="{a.failed}"]')
    expect(failure).to_contain_text("exited with code 3")
    # The charts, from the history of the last hour: the four that ended are bars.
    thr = page.locator("#chart-throughput")
    expect(thr.locator("svg")).to_be_visible()
    expect(thr.locator("g.bucket")).to_have_count(60)
    expect(thr.locator('[data-sum="throughput"]')).to_contain_text("3 succeeded, 1 failed")
    n = thr.locator("rect.seg").evaluate_all("rs => rs.reduce((n, r) => n + Number(r.dataset.n), 0)")
    run.check(n == 4, f"overview: the bars add up to {n} finished tasks, not 4")
    expect(page.locator('#chart-wait [data-sum="wait"]')).to_contain_text("Longest wait")
    expect(page.locator("#chart-wait polyline, #chart-wait circle").first).to_be_attached()
    say("overview: logged in, counts, charts, workers and the failure shown")


def live_task(run, page):
    a = run.args
    page.goto(f"{run.url}/tasks/{a.live}")
    expect(status_of(page)).to_have_attribute("data-status", "queued", timeout=WAIT_MS)
    expect(page.locator("#log-state")).to_have_text("following live…")
    log = page.locator("#log")
    expect(log).to_be_empty()
    expect(page.locator("#cancel")).to_be_visible()
    say("ready: the live task's page is open")
    expect(log).to_contain_text("live line one", timeout=WAIT_MS)
    expect(log).to_contain_text("live line two")
    expect(log.locator(".s-stderr").first).to_have_text("a warning on stderr\n")
    expect(status_of(page)).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    expect(page.locator(".attempt").first).to_contain_text(a.late_worker)
    # The stream toggles: stderr hidden, stdout still shown.
    page.get_by_label("stderr").uncheck()
    expect(log.locator(".s-stderr").first).to_be_hidden()
    expect(log.locator(".s-stdout").first).to_be_visible()
    # Search: the match highlighted; with "only matching lines", the others hidden.
    page.get_by_label("Search logs").fill("TWO")
    expect(log.locator("mark")).to_have_text(["two"])
    expect(page.locator("#log-matches")).to_have_text("1 matching line")
    page.get_by_label("only matching lines").check()
    expect(log.get_by_text("live line one")).to_be_hidden()
    expect(log.get_by_text("live line two")).to_be_visible()
    page.get_by_label("only matching lines").uncheck()
    expect(log.get_by_text("live line one")).to_be_visible()
    page.get_by_label("Search logs").fill("")
    expect(log.locator("mark")).to_have_count(0)
    # Download what is shown (stdout only, stderr is off), then both streams.
    with page.expect_download() as dl:
        page.locator("#log-download").click()
    got = Path(dl.value.path()).read_text()
    run.check(dl.value.suggested_filename.endswith(".stdout.log"), f"download: named {dl.value.suggested_filename}")
    run.check("live line one\nlive line two\n" in got and "warning" not in got, f"download (stdout): {got!r}")
    page.get_by_label("stderr").check()
    expect(log.locator(".s-stderr").first).to_be_visible()
    with page.expect_download() as dl:
        page.locator("#log-download").click()
    got = Path(dl.value.path()).read_text()
    run.check("a warning on stderr\n" in got and "live line one\n" in got, f"download (both): {got!r}")
    page.get_by_label("Search logs").fill("warning")
    run.shot(page, "task")
    # The stream ends with the task.
    expect(status_of(page)).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    expect(page.locator("#log-state")).to_have_text("end of log", timeout=WAIT_MS)
    expect(page.locator(".attempt").first).to_contain_text("exit code")
    expect(page.locator("#cancel")).to_have_count(0)
    say("task: log lines arrived live, toggles, search and download work, the stream ended with the task")


def cancel_and_retry(run, page):
    a = run.args
    page.goto(f"{run.url}/tasks/{a.long}")
    expect(status_of(page)).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    expect(page.locator("#retry")).to_have_count(0)
    page.once("dialog", lambda d: d.accept())
    page.locator("#cancel").click()
    expect(status_of(page)).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
    expect(page.locator(".attempt").first.locator('[data-status="cancelled"]')).to_be_visible()
    expect(page.locator("#cancel")).to_have_count(0)
    page.locator("#retry").click()
    link = page.locator("#retried")
    expect(link).to_be_visible()
    new = link.inner_text().strip()
    say(f"retried as: {new}")
    link.click()
    expect(page.locator("#task-id")).to_have_text(new)
    expect(page.locator(".spec")).to_contain_text(f"cloudai.retry-of={a.long}")
    say("cancel and retry: the running task became cancelled, its retry is a new task")
    return new


def task_list(run, page, retried):
    a = run.args
    # Filtered by image (a prefix) through the form, then by free text too.
    page.goto(f"{run.url}/tasks")
    expect(rows(page)).to_have_count(10, timeout=WAIT_MS)
    page.get_by_label("Image", exact=True).fill("example.org/ml/*")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"image=example\.org%2Fml%2F\*"))
    expect(rows(page)).to_have_count(2)
    run.check(set(row_ids(page)) == {a.train, a.eval}, f"image filter: {row_ids(page)}")
    page.get_by_label("Search", exact=True).fill("EVALUATE")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"q=EVALUATE"))
    expect(rows(page)).to_have_count(1)
    expect(page.locator(f'#task-list tr[data-id="{a.eval}"]')).to_contain_text("evaluate.py")
    say("tasks: filtered by image prefix and free text")

    # Oldest first from the server; sorted by a column on the loaded page, both ways.
    page.goto(f"{run.url}/tasks")
    expect(rows(page)).to_have_count(10, timeout=WAIT_MS)
    page.locator("#f-order").select_option("asc")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"order=asc"))
    expect(rows(page).first).to_have_attribute("data-id", a.succeeded)
    page.goto(f"{run.url}/tasks")
    expect(rows(page)).to_have_count(10, timeout=WAIT_MS)
    images = lambda: rows(page).evaluate_all("rs => rs.map(r => r.querySelector('[data-label=Image]').textContent)")
    page.locator('button[data-sort="image"]').click()
    expect(page.locator('th[data-col="image"]')).to_have_attribute("aria-sort", "ascending")
    run.check(images() == sorted(images()), f"sort ascending: {images()}")
    page.locator('button[data-sort="image"]').click()
    expect(page.locator('th[data-col="image"]')).to_have_attribute("aria-sort", "descending")
    run.check(images() == sorted(images(), reverse=True), f"sort descending: {images()}")
    expect(page).to_have_url(re.compile(r"sort=image&dir=desc"))
    run.shot(page, "tasks")
    # Paging: the cursor, never a count.
    page.goto(f"{run.url}/tasks?limit=4")
    expect(rows(page)).to_have_count(4)
    first = row_ids(page)
    run.check(first[0] == retried, f"newest first: {first[0]}, not the retry {retried}")
    page.locator("#next-page").click()
    expect(page.locator(".pager")).to_contain_text("Page 2")
    expect(rows(page)).to_have_count(4)
    second = row_ids(page)
    run.check(not set(first) & set(second), f"paging: page 2 {second} repeats page 1 {first}")
    say("tasks: sorted by a column both ways, ordered oldest first, paged with next_page_token")

    # Bulk cancel by the filter: a dry run counts first; dismissing does nothing.
    page.goto(f"{run.url}/tasks?image=example.org/batch/*")
    expect(rows(page)).to_have_count(3, timeout=WAIT_MS)
    page.locator("#bulk-cancel").click()
    dialog = page.locator("dialog.ask")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#ask-count")).to_contain_text("3 tasks match this filter")
    dialog.get_by_role("button", name="Keep as is").click()
    expect(dialog).to_have_count(0)
    expect(page.locator('#task-list [data-status="queued"]')).to_have_count(3)
    page.locator("#bulk-cancel").click()
    dialog.get_by_role("button", name="Cancel 3 tasks").click()
    expect(page.locator("#bulk-said")).to_have_text("Cancelled 3 tasks.")
    expect(page.locator('#task-list [data-status="cancelled"]')).to_have_count(3, timeout=WAIT_MS)
    page.locator("#bulk-cancel").click()
    expect(page.locator("#bulk-said")).to_contain_text("nothing to cancel")
    say("tasks: bulk cancel by filter, after a dry run's count and a confirmation")


def workers(run, page):
    a = run.args
    page.goto(f"{run.url}/workers")
    card = page.locator(f'[data-worker="{a.worker}"]')
    expect(card).to_contain_text("healthy", timeout=WAIT_MS)
    expect(page.locator("article.worker")).to_have_count(2)
    expect(card.locator('.bar[aria-label="CPU used"]')).to_have_attribute("aria-valuemax", "1")
    expect(page.locator(f'[data-worker="{a.late_worker}"] .chips')).to_contain_text("zone=b")
    # Drain, with the deadline asked for.
    card.locator('[data-action="drain"]').click()
    dialog = page.locator("dialog.ask")
    expect(dialog).to_contain_text(f"Drain {a.worker}?")
    dialog.get_by_label("Deadline, in minutes from now").fill("30")
    dialog.get_by_role("button", name="Drain worker").click()
    expect(card.locator('[data-status="draining"]')).to_be_visible(timeout=WAIT_MS)
    expect(card.locator('[data-state="draining"]')).to_contain_text("Draining: no new tasks")
    expect(card.locator('[data-action="drain"]')).to_have_count(0)
    expect(card.locator('[data-action="uncordon"]')).to_be_visible()
    run.shot(page, "workers")
    # Cordon and uncordon the other one.
    other = page.locator(f'[data-worker="{a.late_worker}"]')
    other.locator('[data-action="cordon"]').click()
    expect(other.locator('[data-status="cordoned"]')).to_be_visible(timeout=WAIT_MS)
    other.locator('[data-action="uncordon"]').click()
    expect(other.locator('[data-status="cordoned"]')).to_have_count(0, timeout=WAIT_MS)
    expect(other.locator('[data-action="cordon"]')).to_be_visible()
    say("workers: drained with a deadline, cordoned and uncordoned")


def phone(run):
    a = run.args
    p = run.page(PHONE, mobile=True, scheme="dark", token=a.token)
    for path, ready in [
        ("/", lambda: expect(count(p, "all")).to_have_text("10", timeout=WAIT_MS)),
        ("/tasks", lambda: expect(rows(p)).to_have_count(10, timeout=WAIT_MS)),
        (f"/tasks/{a.live}", lambda: expect(p.locator("#log-state")).to_have_text("end of log", timeout=WAIT_MS)),
        ("/workers", lambda: expect(p.locator("article.worker")).to_have_count(2, timeout=WAIT_MS)),
    ]:
        p.goto(f"{run.url}{path}")
        ready()
        run.fits_the_screen(p, f"{path} on a phone")
        if path == "/":
            expect(p.locator("#chart-throughput g.bucket")).to_have_count(60)
            run.fits_the_screen(p, "the charts on a phone")
            run.shot(p, "overview-phone")
    say("phone: every page fits the screen")


def viewer(run, page, retried):
    a = run.args
    page.locator("#logout").click()
    expect(page.locator("#login")).to_be_visible()
    login(run, page, a.viewer_token, "vera")
    expect(page.locator("#whoami")).to_contain_text("viewer")
    page.goto(f"{run.url}/tasks/{retried}")
    expect(page.locator("#task-id")).to_have_text(retried, timeout=WAIT_MS)
    expect(status_of(page)).not_to_have_attribute("data-status", "cancelled")
    expect(page.locator(".spec")).to_contain_text("cloudai.retry-of")
    expect(page.locator("#cancel")).to_have_count(0)
    page.goto(f"{run.url}/tasks/{a.failed}")
    expect(status_of(page)).to_have_attribute("data-status", "failed", timeout=WAIT_MS)
    expect(page.locator("#log")).to_contain_text("boom", timeout=WAIT_MS)
    expect(page.locator("#retry")).to_have_count(0)
    expect(page.locator(".actions button")).to_have_count(0)
    page.goto(f"{run.url}/tasks?image=cloudai/*")
    expect(rows(page).first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#bulk button")).to_have_count(0)
    page.goto(f"{run.url}/workers")
    expect(page.locator("article.worker")).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("article.worker button")).to_have_count(0)
    say("viewer: no cancel, retry, bulk or cordon button shown")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True, help="an admin's")
    p.add_argument("--viewer-token", required=True)
    for name in ["succeeded", "failed", "train", "eval", "long", "live", "worker", "late-worker"]:
        p.add_argument(f"--{name}", required=True)
    args = p.parse_args()

    shots = Path(os.environ.get("CLOUDAI_SCREENSHOTS") or tempfile.mkdtemp(prefix="cloudai-screenshots-"))
    shots.mkdir(parents=True, exist_ok=True)
    say(f"screenshots in {shots}")
    expect.set_options(timeout=15_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CLOUDAI_CHROMIUM", "/usr/bin/chromium"))
        run = Run(args, browser, shots)
        try:
            page = run.page()
            overview(run, page)
            live_task(run, page)
            retried = cancel_and_retry(run, page)
            task_list(run, page, retried)
            workers(run, page)
            # The overview once more, now that more has ended: the picture for the docs.
            page.goto(f"{run.url}/")
            expect(count(page, "cancelled")).to_have_text("4", timeout=WAIT_MS)
            expect(page.locator('#chart-throughput [data-sum="throughput"]')).to_contain_text("4 cancelled")
            run.shot(page, "overview")
            phone(run)
            viewer(run, page, retried)
        finally:
            browser.close()
    if run.problems:
        for pr in run.problems:
            print(f"problem: {pr}", file=sys.stderr)
        return 1
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
