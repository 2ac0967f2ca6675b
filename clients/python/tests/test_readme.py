"""The five-line script of clients/python/README.md, run as written (only the master's URL
changed) against a master and a real Docker worker running the sample task image
(``sample_task/build.sh``). Skipped, saying so, where no Docker daemon or sample image is.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Master

README = Path(__file__).resolve().parents[1] / "README.md"
SAMPLE = "cloudai/sample-task:latest"


def docker_ready() -> str | None:
    """Why the Docker test cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker command"
    r = subprocess.run(["docker", "image", "inspect", SAMPLE], capture_output=True, timeout=60)
    if r.returncode != 0:
        return f"no Docker daemon or no {SAMPLE} image (sample_task/build.sh makes it)"
    return None


def five_lines() -> str:
    text = README.read_text()
    section = text.split("## Five lines", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    return code


def test_the_readme_script_prints_the_sample_tasks_output(
    master: Callable[..., Master],
) -> None:
    why = docker_ready()
    if why:
        pytest.skip(f"the real Docker task: {why}")
    code = five_lines()
    assert len(code.strip().splitlines()) <= 6, code  # five lines and a blank one
    m = master()
    m.start_worker(f"docker-{uuid.uuid4().hex[:8]}", "--stop-grace", "1s", docker=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:50051", m.url), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert any(l.endswith("stdout hello from cloudai sample task") for l in lines), lines
    assert any(l.endswith("stderr a line on stderr") for l in lines), lines
    assert any(l.endswith("stdout done") for l in lines), lines
