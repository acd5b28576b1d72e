#!/usr/bin/env bash
# Commit and push what a job changed in state/, with the engine's one-line message.
#
#   commit-state.sh KIND PATH...      KIND: daily, monitor or weekly
#
# The message comes from `python -m engine commit-message --kind KIND` (asked only when PATH...
# changed: a holiday leaves a new repository with no state to describe); the commit and the
# push (rebase and retry) from push-with-retry.sh, whose environment applies.
set -euo pipefail
kind=${1:?usage: commit-state.sh KIND PATH...}
shift
message="(unchanged)" # not used: push-with-retry.sh commits nothing when nothing changed
if [ -n "$(git status --porcelain -- "$@")" ]; then
  message=$(python -m engine commit-message --state state --kind "$kind")
fi
exec "$(dirname "$0")/push-with-retry.sh" "$message" "$@"
