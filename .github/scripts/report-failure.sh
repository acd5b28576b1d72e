#!/usr/bin/env bash
# Open, or comment on, the GitHub issue that says a scheduled workflow failed.
#
#   report-failure.sh WORKFLOW
#
# One open issue per workflow, labelled pipeline-failure and titled "WORKFLOW run failed":
# the first failure opens it, later failures add a comment to it (no pile of duplicates).
# Close it once the cause is fixed; the next failure opens a new one.
#
# Environment: GH_TOKEN and GH_REPO for gh (issues: write); RUN_URL, the run's page;
# DETAIL, one line saying what failed (the engine's or the push's error line); RESULTS, the
# jobs' results; EVENT, what started the run. All but GH_TOKEN are optional.
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 WORKFLOW" >&2
  exit 2
fi
workflow=$1
case "$workflow" in
  *[!A-Za-z0-9_.-]*) echo "error: WORKFLOW must be a plain name, got: $workflow" >&2; exit 2 ;;
esac
label=pipeline-failure
title="$workflow run failed"

# The label may not exist yet in a new repository (--force: no error if it does).
gh label create "$label" --color B60205 --force \
  --description "A scheduled workflow failed; state/ is at its last good commit" >/dev/null 2>&1 || true

number=$(gh issue list --label "$label" --state open --limit 100 --json number,title \
  --jq ".[] | select(.title == \"$title\") | .number" | head -n 1)

body() {
  printf 'The **%s** workflow failed at %s (started by %s).\n\n' \
    "$workflow" "$(date -u '+%Y-%m-%d %H:%M UTC')" "${EVENT:-unknown event}"
  printf 'What failed: %s\n\n' "${DETAIL:-the run stopped before the engine said why: see the log}"
  if [ -n "${RESULTS:-}" ]; then
    printf 'Jobs: %s\n\n' "$RESULTS"
  fi
  printf 'Log: %s\n\n' "${RUN_URL:-(no link)}"
  printf 'Nothing was committed by the failed step: state/ is still at its last good commit. '
  printf 'The next scheduled run catches up the sessions missed; to retry now, run the workflow by hand '
  printf '(Actions, %s, Run workflow).\n' "$workflow"
}

if [ -n "$number" ]; then
  body | gh issue comment "$number" --body-file -
  echo "commented on issue #$number"
else
  body | gh issue create --title "$title" --label "$label" --body-file -
  echo "opened an issue: $title"
fi
