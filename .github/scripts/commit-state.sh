#!/usr/bin/env bash
# Commit what a job changed in state/, with the engine's one-line message (no push: the
# workflows push in a separate step, the only one that holds the token).
#
#   commit-state.sh KIND PATH...      KIND: daily, monitor or weekly
#
# The message comes from `python -m engine commit-message --kind KIND` (asked only when PATH...
# changed: a holiday leaves a new repository with no state to describe); the commit itself
# from push-with-retry.sh --no-push (the bot identity, only PATH... committed).
set -euo pipefail
kind=${1:?usage: commit-state.sh KIND PATH...}
shift
message="(unchanged)" # not used: nothing is committed when nothing changed
if [ -n "$(git status --porcelain -- "$@")" ]; then
  message=$(python -m engine commit-message --state state --kind "$kind")
fi
exec "$(dirname "$0")/push-with-retry.sh" --no-push "$message" "$@"
