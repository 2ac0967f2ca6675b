#!/usr/bin/env bash
# Builds the images cloudai's README and tests use, locally, from Debian's static busybox:
#   cloudai/sample-task:latest  the sample task (prints a few lines, exits 0)
#   cloudai/busybox:test        a bare busybox image for tests (no entrypoint)
# Needs /bin/busybox from the busybox-static package (apt-get install busybox-static).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bb=${BUSYBOX:-/bin/busybox}
if [ ! -x "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
  echo "error: $bb is missing or not statically linked; run: apt-get install busybox-static" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bb" "$ctx/busybox"
cp "$here/Dockerfile" "$here/task.sh" "$ctx/"
DOCKER_BUILDKIT=0 docker build -q -t cloudai/sample-task:latest "$ctx" >/dev/null
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n' > "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t cloudai/busybox:test "$ctx" >/dev/null
echo "built cloudai/sample-task:latest and cloudai/busybox:test"
