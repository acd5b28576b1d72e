#!/usr/bin/env bash
# Print `detail=<one line>` for $GITHUB_OUTPUT: the last error line of LOG (what the engine or
# the push script said when it stopped), else its last line, else nothing.
#
#   failure-detail.sh LOG >>"$GITHUB_OUTPUT"
set -uo pipefail
log=${1:?usage: failure-detail.sh LOG}
line=""
if [ -s "$log" ]; then
  line=$(grep -E '^(error|ERROR)\b' "$log" | tail -n 1)
  [ -n "$line" ] || line=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
fi
# One line of printable text, short enough for an issue comment's first line.
line=$(printf '%s' "$line" | tr -d '\r' | tr -c '[:print:]' ' ' | cut -c 1-300)
printf 'detail=%s\n' "$line"
