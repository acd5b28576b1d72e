#!/usr/bin/env bash
# Open, or comment on, the GitHub issue that says a scheduled workflow failed.
#
#   report-failure.sh WORKFLOW
#
# One open issue per workflow, labelled pipeline-failure and titled "WORKFLOW run failed":
# the first failure opens it, later failures add a comment to it (no pile of duplicates).
# Close it once the cause is fixed; the next failure opens a new one.
#
# What the text says comes from which job failed and the engine's exit code (README, "Exit
# codes"): 2 configuration and 4 corrupt state must be fixed before the next run, which would
# stop the same way; 3 market data is usually transient and the next run catches up; a failed
# site deploy comes after a successful commit. With Issues disabled on the repository (a new
# fork: gh answers HTTP 410), the same text becomes an ::error:: annotation of the run instead.
#
# Environment: GH_TOKEN and GH_REPO for gh (issues: write); RUN_URL, the run's page;
# DETAIL, one line saying what failed (the engine's or the push's error line); RUN_RESULT and
# PAGES_RESULT, the results of the run and pages jobs (success, failure, cancelled, skipped);
# ENGINE_EXIT, the engine's exit code (empty: the engine did not run or was stopped);
# PUSHED, whether the run job pushed a commit; EVENT, what started the run. All optional but
# GH_TOKEN.
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
run_result=${RUN_RESULT:-failure}
pages_result=${PAGES_RESULT:-skipped}
code=${ENGINE_EXIT:-}
retry="to retry now, run the workflow by hand (Actions, $workflow, Run workflow)"

# One sentence: what failed and what happens next.
verdict() {
  if [ "$run_result" = success ]; then
    if [ "$pages_result" = failure ] || [ "$pages_result" = cancelled ]; then
      printf 'The state was committed and pushed; only the site was not rebuilt or deployed: the site shows the previous state until the next deployment (%s, or run the pages workflow by hand).' "$retry"
    else
      printf 'The jobs report %s and %s: see the log.' "$run_result" "$pages_result"
    fi
    return
  fi
  if [ "$run_result" = cancelled ]; then
    printf 'The job was cancelled or ran out of time: nothing was committed, state/ is still at its last good commit; the next run continues from there (a backlog is run in bounded parts).'
    return
  fi
  case "$code" in
    2) printf 'Configuration error (exit 2): fix it before the next run, which would stop the same way (a missing OPENAI_API_KEY, a bad setting or --date). Nothing was committed.' ;;
    3) printf 'Market data unavailable (exit 3): nothing was committed, state/ is still at its last good commit; this is usually transient, and the next run (the second attempt a few hours later, or the next evening) catches up the sessions missed.' ;;
    4) printf 'Corrupt state (exit 4): fix before the next run. The engine refused a state file and overwrote nothing; every run stops the same way until the file is repaired (git log -- state/ shows the last good commit).' ;;
    6) printf 'A spending limit was reached (exit 6): nothing was committed; raise the budget or wait for the next run, which has a budget of its own.' ;;
    7) printf 'The LLM cannot be used as configured (exit 7): fix before the next run, which would stop the same way (the key refused, the model not served or shut down, a parameter still rejected: python -m engine models lists what is known). Nothing was committed.' ;;
    8) printf 'The state folder could not be written (exit 8: disk full, read-only): nothing was committed; fix the runner before the next run.' ;;
    9) printf 'The state folder was locked by another run (exit 9): nothing was committed; the next run continues once that one has finished.' ;;
    0) printf 'The engine finished, but committing or pushing state/ failed: nothing reached the repository; the next run computes the session again (its LLM answer comes from the cache when it was kept). %s.' "${retry^}" ;;
    '') printf 'The run stopped before the engine finished (checkout, install or a cancelled step): nothing was committed, state/ is still at its last good commit. %s.' "${retry^}" ;;
    *) printf 'The engine stopped with exit code %s: nothing was committed, state/ is still at its last good commit. %s.' "$code" "${retry^}" ;;
  esac
}

body() {
  printf 'The **%s** workflow failed at %s (started by %s).\n\n' \
    "$workflow" "$(date -u '+%Y-%m-%d %H:%M UTC')" "${EVENT:-unknown event}"
  printf 'What failed: %s\n\n' "${DETAIL:-the run stopped before the engine said why: see the log}"
  printf '%s\n\n' "$(verdict)"
  printf 'Jobs: %s %s, pages %s' "$workflow" "$run_result" "$pages_result"
  if [ -n "$code" ]; then printf ' (engine exit code %s)' "$code"; fi
  printf '\n\nLog: %s\n' "${RUN_URL:-(no link)}"
}

# gh's own error line, kept to tell "Issues are disabled" (HTTP 410) from other failures.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec 3>&1 # the job log, whatever a gh call's output is redirected to
annotate() {
  # A workflow command is one line: the verdict, what failed, the log.
  printf '::error title=%s::%s What failed: %s Log: %s\n' "$title" "$(verdict)" \
    "${DETAIL:-see the log}" "${RUN_URL:-(no link)}" >&3
}
gh_or_annotate() {
  if "$@" 2>"$work/gh.err"; then
    return 0
  fi
  if grep -q 'HTTP 410' "$work/gh.err"; then
    echo "Issues are disabled on this repository (HTTP 410): the failure is reported as an annotation" >&3
    annotate
    exit 0
  fi
  cat "$work/gh.err" >&2
  annotate
  exit 1
}

# The label may not exist yet in a new repository (--force: no error if it does).
gh label create "$label" --color B60205 --force \
  --description "A scheduled workflow failed; state/ is at its last good commit" >/dev/null 2>&1 || true

gh_or_annotate gh issue list --label "$label" --state open --limit 100 --json number,title \
  --jq ".[] | select(.title == \"$title\") | .number" >"$work/numbers"
number=$(head -n 1 "$work/numbers")
body >"$work/body.md"

if [ -n "$number" ]; then
  gh_or_annotate gh issue comment "$number" --body-file "$work/body.md"
  echo "commented on issue #$number"
else
  gh_or_annotate gh issue create --title "$title" --label "$label" --body-file "$work/body.md"
  echo "opened an issue: $title"
fi
