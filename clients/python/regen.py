#!/usr/bin/env python3
"""Regenerates the checked-in gRPC stubs, ``cloudai/_pb/``, from ``proto/cloudai/v1/*.proto``.

    python clients/python/regen.py           # rewrite cloudai/_pb/
    python clients/python/regen.py --check   # exit 1 if cloudai/_pb/ is not what the
                                             # protos generate (CI runs this)

It runs grpcio-tools' protoc (``--python_out``, ``--pyi_out``, ``--grpc_python_out``) into
a temporary folder, then flattens ``cloudai/v1/`` into ``_pb/`` and makes the imports
between the generated modules package-relative (``from cloudai.v1 import types_pb2``
would name this package, not the protos). The output depends on the grpcio-tools
version, so it is pinned: install exactly ``GRPCIO_TOOLS_VERSION``.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from importlib import metadata, resources
from pathlib import Path

#: The grpcio-tools release the checked-in stubs come from (`.ci/run` installs it).
GRPCIO_TOOLS_VERSION = "1.85.1"

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
OUT = HERE / "cloudai" / "_pb"

INIT = '''"""gRPC stubs generated from ``proto/cloudai/v1/*.proto`` by ``clients/python/regen.py``
(grpcio-tools {version}). Do not edit: change the protos and run the script.

The typed wrapper in :mod:`cloudai` is the supported API; these modules are for the
calls it does not wrap.
"""
'''

_IMPORT = re.compile(r"^from cloudai\.v1 import ", re.MULTILINE)


def _protos() -> list[Path]:
    protos = sorted((PROTO_ROOT / "cloudai" / "v1").glob("*.proto"))
    if not protos:
        sys.exit(f"error: no .proto files under {PROTO_ROOT / 'cloudai' / 'v1'}")
    return protos


def _check_tools_version() -> None:
    try:
        have = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        sys.exit(
            "error: grpcio-tools is not installed: "
            f"pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}"
        )
    if have != GRPCIO_TOOLS_VERSION:
        sys.exit(
            f"error: grpcio-tools {have} is installed, but the stubs are generated with "
            f"{GRPCIO_TOOLS_VERSION} (its output differs between releases): "
            f"pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}"
        )


def generate() -> dict[str, str]:
    """The files ``_pb/`` must hold, by name: a fresh generation from the protos."""
    _check_tools_version()
    from grpc_tools import protoc  # type: ignore[import-untyped]

    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in _protos()),
        ]
        if protoc.main(args) != 0:
            sys.exit("error: protoc failed (its message is above)")
        files = {"__init__.py": INIT.format(version=GRPCIO_TOOLS_VERSION)}
        for path in sorted((Path(tmp) / "cloudai" / "v1").iterdir()):
            files[path.name] = _IMPORT.sub("from . import ", path.read_text())
    return files


def _current() -> dict[str, str]:
    if not OUT.is_dir():
        return {}
    return {
        p.name: p.read_text()
        for p in sorted(OUT.iterdir())
        if p.is_file() and p.suffix in (".py", ".pyi")
    }


def check() -> list[str]:
    """What differs between ``_pb/`` and a fresh generation (empty: up to date)."""
    want, have = generate(), _current()
    problems = []
    for name in sorted(want.keys() | have.keys()):
        if name not in have:
            problems.append(f"missing: cloudai/_pb/{name}")
        elif name not in want:
            problems.append(f"not generated any more: cloudai/_pb/{name}")
        elif want[name] != have[name]:
            diff = difflib.unified_diff(
                have[name].splitlines(keepends=True),
                want[name].splitlines(keepends=True),
                f"cloudai/_pb/{name} (checked in)",
                f"cloudai/_pb/{name} (generated)",
                n=1,
            )
            lines = list(diff)
            shown = "".join(lines[:40]) + ("  …\n" if len(lines) > 40 else "")
            problems.append(f"differs: cloudai/_pb/{name}\n{shown}")
    return problems


def write() -> None:
    """Rewrites ``_pb/`` from the protos."""
    files = generate()
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.iterdir():
        if stale.is_file() and stale.suffix in (".py", ".pyi") and stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 when cloudai/_pb/ differs from the protos",
    )
    a = parser.parse_args()
    if not a.check:
        write()
        return 0
    problems = check()
    if problems:
        print("the checked-in stubs are out of date with proto/:", file=sys.stderr)
        for p in problems:
            print(p, file=sys.stderr)
        print("run: python clients/python/regen.py", file=sys.stderr)
        return 1
    print(f"cloudai/_pb/ is up to date with {PROTO_ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
