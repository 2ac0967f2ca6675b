"""The dashboard in headless Chromium, as a person uses it: driven by cli/tests/dashboard.rs,
which starts a master and fake-executor workers, enqueues the tasks named here, and
answers the handshake below. Every wait is on a condition (Playwright's expect), never a
fixed sleep. Screenshots go to $CLOUDAI_SCREENSHOTS (default: a new temp dir), whose path
is printed first.

    python dashboard.py --url URL browse --succeeded ID --failed ID --long ID --live ID \
        --worker W1 --late-worker W2
    python dashboard.py --url URL login --token ADMIN --viewer-token VIEWER --task ID

`browse` prints "ready: the live task's page is open" once the page of the live task
(queued: no worker can fit it yet) follows its empty log; the driver then starts the
worker that runs it, and the script sees the lines arrive.

Chromium is Debian's (/usr/bin/chromium, or $CLOUDAI_CHROMIUM): Playwright's own browser
download is never used.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

WAIT_MS = 60_000
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def say(msg):
    print(msg, flush=True)


class Run:
    def __init__(self, args, browser, shots):
        self.args = args
        self.url = args.url.rstrip("/")
        self.browser = browser
        self.shots = shots
        self.problems = []

    def page(self, viewport=LAPTOP, mobile=False, scheme="light"):
        ctx = self.browser.new_context(
            viewport=viewport, is_mobile=mobile, has_touch=mobile, color_scheme=scheme
        )
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


def count(page, status):
    return page.locator(f'[data-count="{status}"] .n')


def status_of(page):
    return page.locator("#task-status [data-status]")


def browse(run):
    a = run.args
    page = run.page()

    # Overview: the counts the driver set up, the workers, the failure.
    page.goto(f"{run.url}/")
    expect(page).to_have_title("Overview · cloudai")
    expect(page.locator("#logout")).to_be_hidden()
    for status, n in [("succeeded", 1), ("failed", 1), ("running", 1), ("queued", 1), ("all", 4)]:
        expect(count(page, status)).to_have_text(str(n), timeout=WAIT_MS)
    expect(page.locator('[data-count="failed"]')).to_contain_text("failed")
    expect(page.locator(f'tr[data-id="{a.worker}"]')).to_contain_text("healthy")
    failure = page.locator(f'tr[data-id="{a.failed}"]')
    expect(failure).to_contain_text("3")
    expect(failure).to_contain_text("exited with code 3")
    run.shot(page, "overview")
    say("overview: counts, workers and the failure shown")

    # The live task's page follows its log before there is any, then sees it arrive.
    page.goto(f"{run.url}/tasks/{a.live}")
    expect(status_of(page)).to_have_attribute("data-status", "queued")
    expect(page.locator("#log-state")).to_have_text("following live…")
    expect(page.locator("#log")).to_be_empty()
    expect(page.locator("#cancel")).to_be_visible()
    say("ready: the live task's page is open")
    log = page.locator("#log")
    expect(log).to_contain_text("live line one", timeout=WAIT_MS)
    expect(log).to_contain_text("live line two")
    expect(log.locator(".s-stderr").first).to_have_text("a warning on stderr\n")
    expect(status_of(page)).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    # The newest attempt comes first (a loaded machine may have lost an earlier one).
    expect(page.locator(".attempt").first).to_contain_text(a.late_worker)
    # The stream toggles: stderr hidden, stdout still shown; then back.
    page.get_by_label("stderr").uncheck()
    expect(log.locator(".s-stderr").first).to_be_hidden()
    expect(log.locator(".s-stdout").first).to_be_visible()
    page.get_by_label("stderr").check()
    expect(log.locator(".s-stderr").first).to_be_visible()
    run.shot(page, "task")
    # The stream ends with the task.
    expect(status_of(page)).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    expect(page.locator("#log-state")).to_have_text("end of log", timeout=WAIT_MS)
    expect(page.locator(".attempt").first).to_contain_text("exit code")
    expect(page.locator("#cancel")).to_have_count(0)
    say("task: log lines arrived live, the toggles work, the stream ended with the task")

    # Workers: health, capacity bars, the long task running on the first worker.
    page.goto(f"{run.url}/workers")
    card = page.locator(f'[data-worker="{a.worker}"]')
    expect(card).to_contain_text("healthy", timeout=WAIT_MS)
    expect(page.locator("article.worker")).to_have_count(2)
    expect(card.locator(".running a")).to_have_attribute("href", f"/tasks/{a.long}")
    expect(card.locator('.bar[aria-label="CPU used"]')).to_have_attribute("aria-valuemax", "1")
    expect(page.locator(f'[data-worker="{a.late_worker}"] .chips')).to_contain_text("zone=b")
    run.shot(page, "workers")
    say("workers: health, labels, bars and running tasks shown")

    # Cancel the long task from its page.
    page.goto(f"{run.url}/tasks/{a.long}")
    expect(status_of(page)).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    page.once("dialog", lambda d: d.accept())
    page.locator("#cancel").click()
    expect(status_of(page)).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
    expect(page.locator(".attempt").first.locator('[data-status="cancelled"]')).to_be_visible()
    say("cancel: the running task became cancelled")

    # The task list, filtered by status through the form, and paged.
    page.goto(f"{run.url}/tasks")
    rows = page.locator("#task-list tbody tr")
    expect(rows).to_have_count(4, timeout=WAIT_MS)
    page.locator("#f-status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{run.url}/tasks?status=failed&limit=50")
    expect(rows).to_have_count(1)
    expect(page.locator(f'#task-list tr[data-id="{a.failed}"]')).to_contain_text("failed")
    run.shot(page, "tasks")
    page.goto(f"{run.url}/tasks?limit=3")
    expect(rows).to_have_count(3)
    first = set(rows.evaluate_all("rs => rs.map(r => r.dataset.id)"))
    page.locator("#next-page").click()
    expect(page.locator(".pager")).to_contain_text("Page 2")
    expect(rows).to_have_count(1)
    last = rows.first.get_attribute("data-id")
    if last in first or len(first | {last}) != 4:
        run.problems.append(f"paging: page 2 shows {last}, page 1 showed {sorted(first)}")
    expect(page.locator("#next-page")).to_have_count(0)
    say("tasks: filtered by status, paged with next_page_token")

    # A phone (in the dark scheme): the same pages, no sideways scrolling.
    phone = run.page(PHONE, mobile=True, scheme="dark")
    phone.goto(f"{run.url}/")
    expect(count(phone, "all")).to_have_text("4", timeout=WAIT_MS)
    run.fits_the_screen(phone, "overview on a phone")
    run.shot(phone, "overview-phone")
    phone.goto(f"{run.url}/tasks/{a.live}")
    expect(phone.locator("#log-state")).to_have_text("end of log", timeout=WAIT_MS)
    run.fits_the_screen(phone, "task on a phone")
    run.shot(phone, "task-phone")
    say("phone: overview and task fit the screen")


def login(run):
    page = run.page()
    page.goto(f"{run.url}/")
    expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#main")).to_be_hidden()
    expect(page.locator("#logout")).to_be_hidden()
    run.shot(page, "login")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("That token did not work")
    page.get_by_label("API token").fill(run.args.token)
    page.get_by_role("button", name="Log in").click()
    expect(count(page, "all")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#logout")).to_be_visible()
    run.shot(page, "overview-auth")
    # The token lasts for the tab: other pages load with it.
    page.goto(f"{run.url}/tasks")
    expect(page.locator("#task-list tbody tr")).to_have_count(1, timeout=WAIT_MS)
    page.locator("#logout").click()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#logout")).to_be_hidden()
    say("login: the login showed, a wrong token was refused, the token logged in")

    # A viewer may read but not cancel: the button is there, the refusal is said.
    page.get_by_label("API token").fill(run.args.viewer_token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#task-list tbody tr")).to_have_count(1, timeout=WAIT_MS)
    page.goto(f"{run.url}/tasks/{run.args.task}")
    expect(status_of(page)).to_have_attribute("data-status", "queued", timeout=WAIT_MS)
    page.once("dialog", lambda d: d.accept())
    page.locator("#cancel").click()
    expect(page.locator(".said")).to_contain_text("Your token may not cancel this task")
    expect(page.locator(".said")).to_contain_text("role viewer")
    expect(page.locator("#cancel")).to_be_disabled()
    expect(status_of(page)).to_have_attribute("data-status", "queued")
    say("login: a viewer's cancel was refused and said so")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("browse")
    for name in ["succeeded", "failed", "long", "live", "worker", "late-worker"]:
        b.add_argument(f"--{name}", required=True)
    lg = sub.add_parser("login")
    lg.add_argument("--token", required=True, help="an admin's")
    lg.add_argument("--viewer-token", required=True)
    lg.add_argument("--task", required=True, help="a queued task")
    args = p.parse_args()

    shots = Path(os.environ.get("CLOUDAI_SCREENSHOTS") or tempfile.mkdtemp(prefix="cloudai-screenshots-"))
    shots.mkdir(parents=True, exist_ok=True)
    say(f"screenshots in {shots}")
    expect.set_options(timeout=15_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CLOUDAI_CHROMIUM", "/usr/bin/chromium"))
        run = Run(args, browser, shots)
        try:
            {"browse": browse, "login": login}[args.mode](run)
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
