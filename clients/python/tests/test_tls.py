"""TLS: an https:// master whose certificate comes from ``cloudai certs init``, reached
with its CA (as a path or PEM bytes); without the CA the client says why it cannot
connect."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import cloudai
from conftest import QUICK, Master, cloudai_bin


def test_https_with_the_masters_ca(master: Callable[..., Master], tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    r = subprocess.run(
        [cloudai_bin(), "certs", "init", str(certs)], capture_output=True, text=True,
        timeout=QUICK,
    )
    assert r.returncode == 0, r.stderr
    ca = certs / "ca.pem"
    m = master(
        "--tls-cert", str(certs / "master.pem"), "--tls-key", str(certs / "master.key"),
        tls_ca=ca,
    )
    https = m.url.replace("http://", "https://")
    with cloudai.Client(https, ca=str(ca)) as c:
        assert c.stats().total == 0
        assert c.enqueue("cloudai/fake:test").spec.image == "cloudai/fake:test"
    # The PEM itself, and a bare HOST:PORT (https:// because a CA is given).
    with cloudai.Client(https.removeprefix("https://"), ca=ca.read_bytes()) as c:
        assert c.stats()["queued"] == 1
    # Without the CA, the system's roots do not know this one.
    with cloudai.Client(https, connect_timeout=5) as c, pytest.raises(cloudai.Unavailable) as e:
        c.stats()
    assert "cannot connect" in e.value.message, e.value.message
    # Plain text to a TLS port: no answer either.
    with cloudai.Client(m.url, connect_timeout=5) as c, pytest.raises(cloudai.Unavailable):
        c.stats()
