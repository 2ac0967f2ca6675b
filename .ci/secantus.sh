#!/usr/bin/env bash
# Starts SecantusDB, a MongoDB wire-protocol server, for the MongoDB backend's tests.
#
# SecantusDB is GPL: it is installed into a Python venv at test time only and is never
# vendored, linked or shipped. It advertises itself as a single-node replica set
# ("secantus"), so transactions work with a plain mongodb://127.0.0.1:PORT/ URI.
#
# Usage (from the repository root):
#   bash .ci/secantus.sh FILE      # start; write the export lines below into FILE
#   bash .ci/secantus.sh FILE --sync-on-commit   # extra flags go to secantusd-py (a test
#                                  # that kills and restarts the server needs this one)
#   . FILE                         # then: CLOUDAI_TEST_MONGODB_URI, SECANTUS_PID, SECANTUS_DIR
#   eval "$(bash .ci/secantus.sh)" # or: start and export in one step (lines on stdout)
#   cargo test -p cloudai-queue --test mongo_conformance
#   kill "$SECANTUS_PID"           # stop it when done (its data dir is under /tmp)
#
# Environment:
#   SECANTUS_VENV  venv to create or reuse (default /tmp/cloudai-secantus-venv)
#   PYTHON         interpreter that creates the venv (default python3)
#   SECANTUS_WAIT  seconds to wait for the port to accept connections (default 60)
#   SECANTUS_PORT  port to listen on (default: a free one); with SECANTUS_DIR, restarts a
#                  killed server on its port and data
#   SECANTUS_DIR   data and log directory to reuse (default: a new one under /tmp)
#   SECANTUS_HOST  address to listen on (default 127.0.0.1; 0.0.0.0 lets processes in
#                  network namespaces reach it through their veth links)
#
# Everything but the export lines goes to stderr.
set -euo pipefail

version="0.7.0b3"
venv="${SECANTUS_VENV:-/tmp/cloudai-secantus-venv}"
python="${PYTHON:-python3}"
wait_s="${SECANTUS_WAIT:-60}"
out_file="${1:-}"
[ $# -gt 0 ] && shift
extra=("$@")

say() { printf 'secantus: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v "$python" >/dev/null 2>&1 || die "$python not found (install Python 3.9+)"

if [ ! -x "$venv/bin/python" ]; then
  say "creating venv $venv"
  if ! "$python" -m venv "$venv" >&2; then
    # Debian's python3 ships venv separately.
    if command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      rm -rf "$venv"
      "$python" -m venv "$venv" >&2 || die "cannot create a venv at $venv"
    else
      die "cannot create a venv at $venv (is the venv module installed?)"
    fi
  fi
fi
installed=$("$venv/bin/python" -m pip show secantusdb 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$installed" != "$version" ]; then
  say "installing secantusdb==$version"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "secantusdb==$version" >&2 \
    || die "pip install secantusdb==$version failed"
fi
[ -x "$venv/bin/secantusd-py" ] || die "$venv/bin/secantusd-py missing after install"

port="${SECANTUS_PORT:-}"
if [ -z "$port" ]; then
  port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
dir="${SECANTUS_DIR:-}"
if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/cloudai-secantus.XXXXXX); fi
mkdir -p "$dir"
host="${SECANTUS_HOST:-127.0.0.1}"
say "starting on $host:$port (data and log in $dir)"
# setsid + nohup: the server outlives this script; the caller stops it by pid.
nohup setsid "$venv/bin/secantusd-py" --host "$host" --port "$port" \
  --storage-path "$dir/data" --log-level WARNING "${extra[@]}" >>"$dir/server.log" 2>&1 </dev/null &
pid=$!

up=0
for _ in $(seq 1 $((wait_s * 4))); do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 30 "$dir/server.log" >&2 || true
    die "secantusd-py exited before accepting connections"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
  sleep 0.25
done
if [ "$up" != 1 ]; then
  kill "$pid" 2>/dev/null || true
  tail -n 30 "$dir/server.log" >&2 || true
  die "127.0.0.1:$port did not accept connections within ${wait_s}s"
fi
say "ready (pid $pid)"

exports="export CLOUDAI_TEST_MONGODB_URI=mongodb://127.0.0.1:$port/
export SECANTUS_PID=$pid
export SECANTUS_DIR=$dir"
if [ -n "$out_file" ]; then
  printf '%s\n' "$exports" >"$out_file"
fi
printf '%s\n' "$exports"
