#!/bin/sh
# cloudai's sample task: prints what it sees, does a little work, and exits 0.
echo "hello from cloudai sample task"
echo "running as $(id -u) on $(hostname)"
echo "args: $*"
i=1
while [ "$i" -le "${STEPS:-3}" ]; do
  echo "step $i of ${STEPS:-3}"
  i=$((i + 1))
  sleep "${STEP_SECONDS:-0}"
done
echo "a line on stderr" >&2
echo "done"
