#!/usr/bin/env bash
# Push the branch's new commits, rebasing on what others pushed meanwhile; optionally commit
# PATH... first.
#
#   push-with-retry.sh                      push the local commits (the workflows' push step)
#   push-with-retry.sh MESSAGE PATH...      commit PATH... (if they changed) with MESSAGE, then push
#   push-with-retry.sh --no-push MESSAGE PATH...   commit only (commit-state.sh: no token needed)
#
# Nothing changed in PATH...: no commit. Nothing ahead of the remote branch: nothing pushed, exit
# 0. Otherwise up to PUSH_ATTEMPTS times: `git pull --rebase` and `git push`, waiting
# PUSH_BACKOFF_SECONDS before the second attempt and twice as long before each next one. A rebase
# that conflicts is aborted (the work tree is left clean, the local commit kept) and counts as a
# failed attempt. Exit 1 after the last failed attempt: nothing was pushed.
#
# Environment (all optional):
#   PUSH_REMOTE (origin), PUSH_BRANCH (the current branch), PUSH_ATTEMPTS (5),
#   PUSH_BACKOFF_SECONDS (5),
#   GITHUB_TOKEN      for an https remote on GitHub: sent as an HTTP header through git's
#                     environment, so that it is never written to .git/config (the checkout
#                     runs with persist-credentials: false) nor shown on a command line; the
#                     workflows give it to the push step only, which runs no Python;
#   GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL, GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL
#                     (default: the github-actions[bot] identity);
#   GITHUB_OUTPUT     when set (on Actions), receives `pushed=true|false` and `sha=<HEAD>`
#                     (not with --no-push).
set -euo pipefail

push=true
if [ "${1:-}" = --no-push ]; then
  push=false
  shift
fi
if [ "$#" -eq 1 ] || { [ "$push" = false ] && [ "$#" -lt 2 ]; }; then
  echo "usage: $0 [[--no-push] MESSAGE PATH...]" >&2
  exit 2
fi
message=${1:-}
[ "$#" -eq 0 ] || shift

remote=${PUSH_REMOTE:-origin}
attempts=${PUSH_ATTEMPTS:-5}
backoff=${PUSH_BACKOFF_SECONDS:-5}
branch=${PUSH_BRANCH:-$(git symbolic-ref --quiet --short HEAD || true)}
if [ -z "$branch" ]; then
  echo "error: HEAD is detached: set PUSH_BRANCH to the branch to push to" >&2
  exit 2
fi

bot_name='github-actions[bot]'
bot_email='41898282+github-actions[bot]@users.noreply.github.com'
export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-$bot_name}
export GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-$bot_email}
export GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-$bot_name}
export GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-$bot_email}

if [ -n "${GITHUB_TOKEN:-}" ]; then
  basic=$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')
  if [ "${GITHUB_ACTIONS:-}" = true ]; then
    echo "::add-mask::$basic"
  fi
  # git >= 2.31 reads configuration from the environment: nothing lands on disk.
  export GIT_CONFIG_COUNT=1
  export GIT_CONFIG_KEY_0="http.${GITHUB_SERVER_URL:-https://github.com}/.extraheader"
  export GIT_CONFIG_VALUE_0="AUTHORIZATION: basic $basic"
fi

output() {
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf '%s\n' "$@" >>"$GITHUB_OUTPUT"
  fi
}

# A path that neither exists nor is tracked (no alert written yet) is simply not there to commit.
if [ -n "$message" ]; then
  paths=()
  for path in "$@"; do
    if [ -e "$path" ] || git ls-files --error-unmatch -- "$path" >/dev/null 2>&1; then
      paths+=("$path")
    fi
  done
  if [ "${#paths[@]}" -gt 0 ]; then
    git add --all -- "${paths[@]}"
  fi
  if [ "${#paths[@]}" -eq 0 ] || git diff --cached --quiet -- "${paths[@]}"; then
    echo "nothing changed in $*: no commit"
  else
    git commit --quiet --message "$message" -- "${paths[@]}"
    echo "committed: $message"
  fi
fi
if [ "$push" = false ]; then
  exit 0
fi

if ! git fetch --quiet "$remote" "$branch"; then
  echo "warning: could not fetch $remote/$branch: pushing anyway" >&2
elif [ "$(git rev-list --count FETCH_HEAD..HEAD)" -eq 0 ]; then
  echo "nothing to push: $branch is at $remote/$branch or behind it"
  output pushed=false "sha=$(git rev-parse HEAD)"
  exit 0
fi

wait_s=$backoff
for ((attempt = 1; attempt <= attempts; attempt++)); do
  if [ "$attempt" -gt 1 ]; then
    echo "attempt $attempt of $attempts in ${wait_s}s"
    sleep "$wait_s"
    wait_s=$((wait_s * 2))
  fi
  if ! git pull --quiet --rebase --autostash "$remote" "$branch"; then
    echo "warning: attempt $attempt: rebasing on $remote/$branch failed (conflict?): aborted" >&2
    git rebase --abort 2>/dev/null || true
    continue
  fi
  if git push --quiet "$remote" "HEAD:refs/heads/$branch"; then
    echo "pushed $(git rev-parse --short HEAD) to $remote/$branch (attempt $attempt)"
    output pushed=true "sha=$(git rev-parse HEAD)"
    exit 0
  fi
  echo "warning: attempt $attempt: push to $remote/$branch was rejected" >&2
done
echo "error: could not push to $remote/$branch after $attempts attempts: the commit stays local, nothing was pushed" >&2
exit 1
