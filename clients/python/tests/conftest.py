"""Fixtures: real ``cloudai`` master and worker processes on loopback.

The binary comes from ``CLOUDAI_BIN`` (the Rust test ``cli/tests/python_client.rs`` sets
it), else ``target/debug/cloudai`` of this checkout. Masters run with ``--no-shell
--http-listen off`` and a SQLite store in a temporary folder; workers use the fake
executor, whose tasks behave as their ``CLOUDAI_FAKE_*`` env says
(``worker/src/executor/fake.rs``). Every process is stopped at the end of its fixture.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# The package under test is this checkout's, whatever is installed.
sys.path.insert(0, str(HERE.parent))

import cloudai  # noqa: E402

T = TypeVar("T")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# A SIGTERM (the Rust test giving up) tears the fixtures down, stopping the masters and
# workers they started, instead of leaving them running.
signal.signal(signal.SIGTERM, _interrupt)

#: Longest wait for a process or a task state, on a busy 2-core machine.
QUICK = 30.0


def eventually(what: str, f: Callable[[], T | None], timeout: float = QUICK) -> T:
    """Polls ``f`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        v = f()
        if v is not None and v is not False:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cloudai_bin() -> str:
    path = os.environ.get("CLOUDAI_BIN") or str(REPO / "target" / "debug" / "cloudai")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no cloudai binary at {path}: build it (cargo build -p cloudai) or set CLOUDAI_BIN"
        )
    return path


class Proc:
    """A cloudai process, its output in files under ``dir``."""

    def __init__(self, name: str, args: list[str], dir: Path) -> None:
        self.name = name
        self.out = dir / f"{name}.stdout"
        self.err = dir / f"{name}.stderr"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.p = subprocess.Popen(
                [cloudai_bin(), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=dir,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            )

    def running(self) -> bool:
        return self.p.poll() is None

    def output(self) -> str:
        text = self.out.read_text(errors="replace") + self.err.read_text(errors="replace")
        return text[-4000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.running():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def kill(self) -> None:
        """SIGKILL, as a crashed host."""
        if self.running():
            self.p.kill()
        self.p.wait()


class Master:
    """A master on a free loopback port with its store in ``dir``."""

    def __init__(
        self, dir: Path, *extra: str, name: str = "master", tls_ca: Path | None = None
    ) -> None:
        dir.mkdir(parents=True, exist_ok=True)
        self.dir = dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_ca = tls_ca
        self.store = f"sqlite://{dir / 'cloudai.db'}"
        self.secret = str(dir / "cloudai.secret")
        self.workers: list[Proc] = []
        self.tokens: dict[str, str] = {}
        self.proc = Proc(
            name,
            [
                "master",
                "--no-shell",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--http-listen",
                "off",
                "--store",
                self.store,
                "--secret-file",
                self.secret,
                "--heartbeat-interval",
                "500ms",
                *extra,
            ],
            dir,
        )
        try:
            self.wait_answering()
        except BaseException:
            self.proc.kill()
            raise

    def wait_answering(self) -> None:
        if self.tls_ca is not None:
            probe = cloudai.Client(
                self.url.replace("http://", "https://"), ca=str(self.tls_ca),
                connect_timeout=1, timeout=5,
            )
        else:
            probe = cloudai.Client(self.url, connect_timeout=1, timeout=5)

        def answers() -> bool:
            assert self.proc.running(), f"the master exited:\n{self.proc.output()}"
            try:
                probe.stats()
            except (cloudai.Unauthenticated, cloudai.PermissionDenied):
                pass  # answering, with auth on
            except cloudai.Unavailable:
                return False
            return True

        try:
            eventually(f"the master at {self.url} to answer", answers)
        finally:
            probe.close()

    def client(self, **kwargs: Any) -> cloudai.Client:
        return cloudai.Client(self.url, **kwargs)

    def start_worker(self, id: str, *extra: str, docker: bool = False) -> Proc:
        """A fake-executor worker (a Docker one with ``docker``), once the master reports
        it healthy."""
        w = Proc(
            f"worker-{id}",
            [
                "worker",
                *([] if docker else ["--fake-executor"]),
                "--master",
                self.url,
                "--id",
                id,
                "--heartbeat-interval",
                "500ms",
                *extra,
            ],
            self.dir,
        )
        self.workers.append(w)
        with self.client() as c:

            def healthy() -> bool:
                assert w.running(), f"the worker exited:\n{w.output()}"
                return any(
                    x.id == id and x.health is cloudai.WorkerHealth.HEALTHY for x in c.workers()
                )

            eventually(f"worker {id} to be healthy", healthy)
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.proc.stop()


def add_user(dir: Path, name: str, role: str) -> str:
    """``cloudai users add`` on the store and secret file a :class:`Master` in ``dir``
    uses: the user's API token (printed alone on stdout)."""
    dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [
            cloudai_bin(),
            "users",
            "add",
            name,
            "--role",
            role,
            "--store",
            f"sqlite://{dir / 'cloudai.db'}",
            "--secret-file",
            str(dir / "cloudai.secret"),
        ],
        capture_output=True,
        text=True,
        timeout=QUICK,
        cwd=dir,
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("cai_"), r.stdout
    return token


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """One master and one fake worker (``w1``), shared by the tests that only add tasks."""
    m = Master(tmp_path_factory.mktemp("cluster"))
    try:
        m.start_worker("w1")
        yield m
    finally:
        m.stop()


@pytest.fixture
def client(cluster: Master) -> Iterator[cloudai.Client]:
    with cluster.client() as c:
        yield c


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Callable[..., Master]]:
    """Starts masters of the test's own (stopped at its end): ``master(*flags)``."""
    started: list[Master] = []

    def start(
        *extra: str,
        name: str = "master",
        users: dict[str, str] | None = None,
        tls_ca: Path | None = None,
    ) -> Master:
        """With ``users`` (name → role), they are added before the master starts;
        their tokens are in ``Master.tokens``. With ``tls_ca``, it serves TLS (``extra``
        has the certificate flags) signed by that CA."""
        dir = tmp_path / f"{name}-{len(started)}"
        tokens = {u: add_user(dir, u, role) for u, role in (users or {}).items()}
        m = Master(dir, *extra, name=name, tls_ca=tls_ca)
        m.tokens = tokens
        started.append(m)
        return m

    try:
        yield start
    finally:
        for m in started:
            m.stop()
