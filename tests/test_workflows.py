"""The GitHub Actions workflows (.github/workflows/) and the scripts they call (.github/scripts/).

Offline and fast: the workflows are checked against GitHub's workflow schema
(check-jsonschema's vendored copy) and audited by zizmor --offline; the rules this project
holds them to (pinned actions, least privilege, one writer at a time, the secret in one step,
no template injection, the schedules) are read from the YAML; the scripts run against local
git repositories and a fake ``gh``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
SCHEDULED = ("daily.yml", "monitor.yml", "weekly.yml")
WRITER_GROUP = "state-writer"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
NEW_YORK = ZoneInfo("America/New_York")


def _tool(name: str) -> str:
    """A console script of the dev extras: beside this Python first (the venv), then PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    return {p.name: _load(p) for p in WORKFLOW_FILES}


def _steps(doc: dict):
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def test_the_expected_workflows_exist(workflows):
    assert set(workflows) == {"ci.yml", "daily.yml", "monitor.yml", "weekly.yml", "pages.yml", "sweep.yml"}


# --- external validators ------------------------------------------------------------


def test_workflows_match_github_schema():
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOW_FILES)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_of_medium_severity_or_more():
    result = subprocess.run([_tool("zizmor"), "--offline", "--format", "json", str(WORKFLOWS)],
                            capture_output=True, text=True, timeout=120)
    # zizmor exits non-zero when it reports findings: judge by their severity instead.
    findings = json.loads(result.stdout)
    serious = [
        (f["ident"], f["determinations"]["severity"], f["locations"][0]["symbolic"]["key"])
        for f in findings
        if f["determinations"]["severity"] in ("Medium", "High")
    ]
    assert serious == []
    assert result.returncode in (0, 10, 11, 12), result.stderr  # 10..14: the highest severity found


# --- pinning, permissions, secrets, injection ------------------------------------------


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")


def test_every_action_is_pinned_by_commit_with_its_version():
    seen = 0
    for path in WORKFLOW_FILES:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            m = USES.match(line)
            if not m:
                continue
            seen += 1
            ref = m["ref"]
            if ref.startswith("./"):
                assert ref == "./.github/workflows/pages.yml", f"{path.name}:{n}"
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}:{n}: {ref} is not pinned"
            assert re.fullmatch(r"\s+#\s*v\d+(\.\d+)*", m["rest"]), f"{path.name}:{n}: no '# vX.Y.Z' comment"
    assert seen >= 10


def test_one_version_per_action():
    """The same action is pinned to the same commit everywhere (one place to bump)."""
    pins: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = USES.match(line)
            if m and "@" in m["ref"]:
                action, sha = m["ref"].split("@")
                pins.setdefault(action, set()).add(sha + m["rest"].strip())
    assert {a: len(s) for a, s in pins.items() if len(s) > 1} == {}


def test_every_workflow_declares_least_privilege(workflows):
    for name, doc in workflows.items():
        assert "permissions" in doc, f"{name} has no top-level permissions"
        top = doc["permissions"] or {}
        assert all(v in ("read", "none") for v in top.values()), f"{name}: writes granted to every job"
        for job_id, job in doc["jobs"].items():
            if top == {} and "steps" in job:
                assert "permissions" in job, f"{name}:{job_id} runs with no permission declared"


def _writes(job: dict) -> set[str]:
    return {k for k, v in (job.get("permissions") or {}).items() if v == "write"}


def test_writer_jobs_share_one_queue(workflows):
    writers = []
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            if "contents" in _writes(job):
                writers.append(name)
                assert job.get("concurrency") == {"group": WRITER_GROUP, "cancel-in-progress": False,
                                                  "queue": "max"}, (
                    f"{name}:{job_id} writes the repository outside the {WRITER_GROUP} queue"
                )
    assert sorted(writers) == sorted(SCHEDULED)


def test_only_the_failure_jobs_may_write_issues(workflows):
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            if "issues" in _writes(job):
                assert job_id == "report-failure" and job["if"] == "failure()", f"{name}:{job_id}"
                assert _writes(job) == {"issues"}
    for name in SCHEDULED:
        job = workflows[name]["jobs"]["report-failure"]
        assert set(job["needs"]) == {"run", "pages"}
        assert any(f"report-failure.sh {name[:-4]}" in s.get("run", "") for s in job["steps"])


def test_the_api_key_is_only_in_the_daily_steps_environment(workflows):
    holders = []
    for name, doc in workflows.items():
        assert "OPENAI_API_KEY" not in json.dumps(doc.get("env", {})), f"{name}: key in the workflow env"
        for job_id, job in doc["jobs"].items():
            assert "OPENAI_API_KEY" not in json.dumps(job.get("env", {})), f"{name}:{job_id}: key in a job env"
            assert "secrets" not in job or name != "ci.yml"
        for job_id, step in _steps(doc):
            if "OPENAI_API_KEY" in json.dumps(step):
                holders.append((name, job_id, step.get("name")))
                assert step["env"]["OPENAI_API_KEY"] == "${{ secrets.OPENAI_API_KEY }}"
                assert "python -m engine" in step["run"] and "daily" in step["run"]
    assert holders == [("daily.yml", "run", "Run the daily step")]
    for path in WORKFLOW_FILES:
        text = path.read_text(encoding="utf-8")
        secrets = set(re.findall(r"secrets\.(\w+)", text))
        assert secrets == ({"OPENAI_API_KEY"} if path.name == "daily.yml" else set()), path.name


def test_no_pull_request_target_and_no_workflow_run():
    for path in WORKFLOW_FILES:
        text = path.read_text(encoding="utf-8")
        assert "pull_request_target" not in text and "workflow_run" not in text, path.name


def test_no_expression_inside_a_run_script(workflows):
    """Inputs and event data reach scripts through env: variables only (no template injection)."""
    for name, doc in workflows.items():
        for job_id, step in _steps(doc):
            assert "${{" not in step.get("run", ""), f"{name}:{job_id}: {step.get('name')}"


def test_checkouts_keep_no_credentials(workflows):
    for name, doc in workflows.items():
        for job_id, step in _steps(doc):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}:{job_id}"


def test_commits_are_made_only_after_the_engine_succeeded(workflows):
    """Steps run in order and stop at the first failure: the commit step comes after the
    engine's and has no `if:` that would run it anyway; the failure summary only runs on failure."""
    for name in SCHEDULED:
        steps = workflows[name]["jobs"]["run"]["steps"]
        runs = [s.get("run", "") for s in steps]
        engine = next(i for i, r in enumerate(runs) if "python -m engine" in r)
        commit = next(i for i, r in enumerate(runs) if "commit-state.sh" in r)
        push = next(i for i, r in enumerate(runs) if "push-with-retry.sh" in r)
        assert engine < commit < push
        assert all("if" not in steps[i] for i in (engine, commit, push))
        assert steps[-1]["if"] == "failure()" and "failure-detail.sh" in steps[-1]["run"]
        assert workflows[name]["defaults"]["run"]["shell"] == "bash"  # -eo pipefail: tee keeps the status


def test_scheduled_workflows_can_be_run_by_hand(workflows):
    for name in SCHEDULED:
        assert "workflow_dispatch" in workflows[name]["on"]
        assert "schedule" in workflows[name]["on"]
    date_input = workflows["daily.yml"]["on"]["workflow_dispatch"]["inputs"]["date"]
    assert date_input["required"] is False
    step = next(s for _, s in _steps(workflows["daily.yml"]) if s.get("name") == "Run the daily step")
    assert step["env"]["DATE"] == "${{ inputs.date }}" and '--date "${DATE:-last-closed}"' in step["run"]


def test_state_changing_workflows_deploy_the_site_themselves(workflows):
    pages = workflows["pages.yml"]
    assert set(pages["on"]) == {"workflow_call", "workflow_dispatch"}
    deploy = pages["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "github-pages"
    assert _writes(deploy) == {"pages", "id-token"}
    build_runs = [s.get("run", "") for s in pages["jobs"]["build"]["steps"]]
    assert any(run.strip().splitlines()[-1:] == ["python -m engine site --state state --out public"]
               for run in build_runs)
    for name in SCHEDULED:
        job = workflows[name]["jobs"]["pages"]
        assert job["uses"] == "./.github/workflows/pages.yml"
        assert job["with"]["ref"] == "${{ needs.run.outputs.sha }}"  # the pushed commit
        assert job["if"] == "needs.run.outputs.pushed == 'true'"  # nothing pushed: nothing redeployed
        assert job["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
        assert "push" not in workflows[name]["on"]


def test_ci_runs_the_tests_without_secrets(workflows):
    ci = workflows["ci.yml"]
    assert {"push", "pull_request"} <= set(ci["on"])
    assert any(s.get("run") == "bash .ci/run" for _, s in _steps(ci))
    assert "secrets." not in (WORKFLOWS / "ci.yml").read_text(encoding="utf-8")


def test_the_scripts_the_workflows_call_exist_and_are_executable(workflows):
    called = set()
    for doc in workflows.values():
        for _, step in _steps(doc):
            called |= set(re.findall(r"\.github/scripts/([\w.-]+)", step.get("run", "")))
    assert called == {"commit-state.sh", "push-with-retry.sh", "failure-detail.sh", "report-failure.sh"}
    for script in called | {"push-with-retry.sh"}:
        assert os.access(SCRIPTS / script, os.X_OK), script


def test_the_token_is_only_in_the_push_steps_which_run_no_python(workflows):
    for name in SCHEDULED:
        for job_id, step in _steps(workflows[name]):
            if "github.token" in json.dumps(step.get("env", {})) and job_id == "run":
                assert step["run"].startswith(".github/scripts/push-with-retry.sh "), f"{name}: {step.get('name')}"
    code = [ln for ln in (SCRIPTS / "push-with-retry.sh").read_text(encoding="utf-8").splitlines()
            if not ln.lstrip().startswith("#")]
    assert code and not any("python" in ln.lower() for ln in code)


def test_writers_check_out_the_branch_tip_when_the_job_starts(workflows):
    for name in SCHEDULED:
        checkout = workflows[name]["jobs"]["run"]["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@")
        assert checkout["with"]["ref"] == "${{ github.ref }}", name
    build = workflows["pages.yml"]["jobs"]["build"]["steps"][0]
    assert build["with"]["ref"] == "${{ inputs.ref || github.ref }}"


def test_every_install_is_the_hashed_lock(workflows):
    installs = 0
    for name, doc in workflows.items():
        for _, step in _steps(doc):
            for line in step.get("run", "").splitlines():
                if "pip install" in line:
                    installs += 1
                    assert "--require-hashes" in line and "-r requirements.txt" in line, f"{name}: {line}"
    assert installs >= 4
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r requirements.txt" in ci
    project = [ln for ln in ci.splitlines() if "pip install" in ln and "-e " in ln]
    assert project and all("--no-deps" in ln for ln in project)  # nothing unlocked comes in


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_covers_every_declared_dependency_with_hashes():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    lock = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    pinned = {_normalise(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.M)}
    names = {_normalise(re.split(r"[\s\[<>=~!;]", d, maxsplit=1)[0]) for d in declared}
    missing = sorted(names - set(pinned))
    assert missing == [], f"not in requirements.txt: regenerate it (docs/setup.md): {missing}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])
    assert all("--hash=sha256:" in e for e in entries if "==" in e)


def test_dependabot_updates_python_and_actions_weekly_in_groups():
    doc = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    by = {u["package-ecosystem"]: u for u in doc["updates"]}
    assert set(by) == {"pip", "github-actions"}
    for update in by.values():
        assert update["schedule"]["interval"] == "weekly" and update["groups"]
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot",
                             str(ROOT / ".github" / "dependabot.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_runner_image_is_pinned(workflows):
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            if "runs-on" in job:
                assert re.fullmatch(r"ubuntu-\d\d\.\d\d", job["runs-on"]), f"{name}:{job_id}: {job['runs-on']}"


def test_the_setup_guide_is_a_checklist_that_matches_the_workflows(workflows):
    text = (ROOT / "docs" / "setup.md").read_text(encoding="utf-8")
    boxes = re.findall(r"^- \[ \] \*\*(.+?)\*\*(.*?)(?=^- \[ \]|^## )", text, re.M | re.S)
    titles = [t for t, _ in boxes]
    for needed in ("Keep the repository public", "Enable Actions", "Enable each scheduled workflow",
                   "Enable Issues", "Pages from Actions", "The API key", "Deploy the site now", "Find the site"):
        assert needed in " | ".join(titles), needed
    body = dict(boxes)
    scheduled = sorted(n[:-4] for n, d in workflows.items() if "schedule" in d["on"])
    assert all(f"`{n}`" in body["Enable each scheduled workflow"] for n in scheduled), scheduled
    env = workflows["daily.yml"]["jobs"]["run"]["environment"]["name"]
    assert f"named `{env}`" in body["The API key"]
    used_vars = set(re.findall(r"vars\.(\w+)", "".join(p.read_text() for p in WORKFLOW_FILES)))
    assert all(f"| `{v}` |" in text for v in used_vars), used_vars
    assert "OPENAI_API_KEY" in body["The API key"]
    assert "github.io" in body["Find the site"]
    # The one command that regenerates the lock is the one that made it.
    made_by = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()[1].strip("# ").strip()
    assert made_by in text
    pin = next(s["uses"] for _, s in _steps(workflows["daily.yml"]) if s.get("uses", "").startswith("actions/checkout"))
    assert pin in text  # the example pin is the current one


# --- schedules ---------------------------------------------------------------------------


def _cron(doc: dict) -> list[str]:
    return [c["cron"] for c in doc["on"]["schedule"]]


def _hours(field: str) -> list[int]:
    if "/" in field:
        span, step = field.split("/")
        lo, hi = map(int, span.split("-"))
        return list(range(lo, hi + 1, int(step)))
    if "-" in field:
        lo, hi = map(int, field.split("-"))
        return list(range(lo, hi + 1))
    return [int(x) for x in field.split(",")]


def _new_york(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC).astimezone(NEW_YORK)


WINTER, SUMMER = dt.date(2026, 1, 14), dt.date(2026, 7, 15)  # Wednesdays; EST and EDT


def test_the_daily_run_starts_after_the_new_york_close_in_winter_and_summer(workflows):
    cron, _second = _cron(workflows["daily.yml"])
    minute, hour, dom, month, dow = cron.split()
    assert (dom, month, dow) == ("*", "*", "1-5")
    for day in (WINTER, SUMMER):
        local = _new_york(day, int(hour), int(minute))
        assert local.date() == day, "the run must fall on the same New York day"
        assert local.time() >= dt.time(16, 30), f"{day}: {local:%H:%M} in New York is before the close"
    assert _new_york(WINTER, int(hour), int(minute)).utcoffset() != _new_york(SUMMER, 0, 0).utcoffset()


def test_the_weekly_report_is_written_on_friday_evening_in_new_york_after_the_daily(workflows):
    (cron,) = _cron(workflows["weekly.yml"])
    minute, hour, _, _, dow = cron.split()
    daily, second = _cron(workflows["daily.yml"])
    d_minute, d_hour = map(int, daily.split()[:2])
    s_minute, s_hour = map(int, second.split()[:2])
    for friday in (dt.date(2026, 1, 16), dt.date(2026, 7, 17)):
        utc_day = friday + dt.timedelta(days=int(dow) - 5)
        local = _new_york(utc_day, int(hour), int(minute))
        assert local.date() == friday and local.time() >= dt.time(16, 30)
        daily_run = _new_york(friday, d_hour, d_minute)
        assert local - daily_run >= dt.timedelta(hours=2)
        second_run = _new_york(friday + dt.timedelta(days=1), s_hour, s_minute)
        assert local - second_run >= dt.timedelta(minutes=45)  # after the second attempt too


def test_the_second_daily_attempt_comes_hours_later_on_the_same_new_york_evening(workflows):
    first, second = _cron(workflows["daily.yml"])
    assert first.split()[4] == "1-5" and second.split()[4] == "2-6"  # the next UTC day
    f_minute, f_hour = map(int, first.split()[:2])
    s_minute, s_hour = map(int, second.split()[:2])
    for day in (WINTER, SUMMER):
        a = _new_york(day, f_hour, f_minute)
        b = _new_york(day + dt.timedelta(days=1), s_hour, s_minute)
        assert b.date() == day and dt.timedelta(hours=3) <= b - a <= dt.timedelta(hours=6)


def test_the_monitor_covers_both_sessions(workflows):
    (cron,) = _cron(workflows["monitor.yml"])
    _, hour, _, _, dow = cron.split()
    hours = _hours(hour)
    assert dow == "1-5"
    assert min(hours) <= 7 and max(hours) >= 21  # Paris opens 07:00 UTC in summer; New York closes 21:00 UTC in winter
    assert all(b - a <= 2 for a, b in zip(hours, hours[1:], strict=False))


# --- push-with-retry.sh against a local bare repository -------------------------------------


def _git_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITHUB_", "PUSH_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), **extra)
    return env


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path: Path):
    """A bare 'GitHub' remote with state/ in it, the runner's clone and a second clone."""
    home = tmp_path / "home"
    home.mkdir()
    env = _git_env(home, GIT_AUTHOR_NAME="Someone", GIT_AUTHOR_EMAIL="someone@example.org",
                   GIT_COMMITTER_NAME="Someone", GIT_COMMITTER_EMAIL="someone@example.org")
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(remote), env=env)
    seed = tmp_path / "seed"
    _git(tmp_path, "clone", "--quiet", str(remote), str(seed), env=env)
    _git(seed, "checkout", "--quiet", "-b", "main", env=env)
    (seed / "state").mkdir()
    (seed / "state" / "equity.txt").write_text("day 1\n")
    (seed / "state" / "alerts.jsonl").write_text('{"n": 1}\n')
    (seed / "README.md").write_text("readme\n")
    _git(seed, "add", ".", env=env)
    _git(seed, "commit", "--quiet", "-m", "start", env=env)
    _git(seed, "push", "--quiet", "origin", "main", env=env)
    runner, other = tmp_path / "runner", tmp_path / "other"
    for clone in (runner, other):
        _git(tmp_path, "clone", "--quiet", str(remote), str(clone), env=env)
    return {"remote": remote, "runner": runner, "other": other, "env": env, "home": home, "tmp": tmp_path}


def _push(repos, message: str, *paths: str, attempts: int = 3, **extra: str):
    out = repos["tmp"] / "github_output"
    env = _git_env(repos["home"], PUSH_ATTEMPTS=str(attempts), PUSH_BACKOFF_SECONDS="0",
                   GITHUB_OUTPUT=str(out), **extra)
    result = subprocess.run([str(SCRIPTS / "push-with-retry.sh"), message, *paths], cwd=repos["runner"], env=env,
                            capture_output=True, text=True, timeout=60)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines()) if out.exists() else {}
    return result, outputs


def _remote_log(repos) -> list[str]:
    return _git(repos["remote"], "log", "--format=%s|%ae", "main", env=repos["env"]).splitlines()


def _commit_elsewhere(repos, path: str, text: str, message: str) -> None:
    other, env = repos["other"], repos["env"]
    _git(other, "pull", "--quiet", "origin", "main", env=env)
    (other / path).write_text(text)
    _git(other, "commit", "--quiet", "-am", message, env=env)
    _git(other, "push", "--quiet", "origin", "main", env=env)


def test_push_commits_nothing_when_nothing_changed(repos):
    before = _remote_log(repos)
    head = _git(repos["runner"], "rev-parse", "HEAD", env=repos["env"])
    result, outputs = _push(repos, "2026-11-24: NAV 10,000.00 EUR", "state")
    assert result.returncode == 0, result.stderr
    assert "nothing changed" in result.stdout
    assert _git(repos["runner"], "rev-parse", "HEAD", env=repos["env"]) == head
    assert _remote_log(repos) == before
    assert outputs == {"pushed": "false", "sha": head}


def test_push_commits_only_the_given_paths_as_the_bot(repos):
    runner = repos["runner"]
    (runner / "state" / "equity.txt").write_text("day 1\nday 2\n")
    (runner / "README.md").write_text("edited by hand, not the job's to commit\n")
    result, outputs = _push(repos, "2026-11-24: NAV 10,100.00 EUR, 1 order, policy rules", "state")
    assert result.returncode == 0, result.stderr
    assert _remote_log(repos)[0] == f"2026-11-24: NAV 10,100.00 EUR, 1 order, policy rules|{BOT_EMAIL}"
    assert _git(runner, "show", "--name-only", "--format=", "HEAD", env=repos["env"]) == "state/equity.txt"
    assert _git(runner, "log", "-1", "--format=%an", env=repos["env"]) == "github-actions[bot]"
    assert (runner / "README.md").read_text().startswith("edited by hand")
    assert outputs["pushed"] == "true" and outputs["sha"] == _git(repos["remote"], "rev-parse", "main",
                                                                  env=repos["env"])


def test_push_rebases_on_a_concurrent_push_and_succeeds(repos):
    # Someone pushes an alert while the runner was computing the day.
    _commit_elsewhere(repos, "state/alerts.jsonl", '{"n": 1}\n{"n": 2}\n', "monitor: 1 alert")
    (repos["runner"] / "state" / "equity.txt").write_text("day 1\nday 2\n")
    result, outputs = _push(repos, "daily", "state")
    assert result.returncode == 0, result.stderr
    assert [line.split("|")[0] for line in _remote_log(repos)] == ["daily", "monitor: 1 alert", "start"]
    remote_files = _git(repos["remote"], "show", "main:state/alerts.jsonl", env=repos["env"])
    assert remote_files == '{"n": 1}\n{"n": 2}'
    assert outputs["pushed"] == "true"


def test_push_retries_a_rejected_push_with_backoff(repos):
    # The remote refuses the first push (another writer won the race between our pull and push).
    hook = repos["remote"] / "hooks" / "pre-receive"
    flag = repos["tmp"] / "rejected-once"
    hook.write_text(f"#!/bin/sh\nif [ ! -e '{flag}' ]; then touch '{flag}'; echo 'busy' >&2; exit 1; fi\nexit 0\n")
    hook.chmod(0o755)
    (repos["runner"] / "state" / "equity.txt").write_text("day 1\nday 2\n")
    result, outputs = _push(repos, "daily", "state")
    assert result.returncode == 0, result.stderr
    assert "attempt 1: push to origin/main was rejected" in result.stderr
    assert "attempt 2 of 3" in result.stdout
    assert _remote_log(repos)[0].startswith("daily|")


def test_a_real_conflict_fails_cleanly_after_the_retries(repos):
    _commit_elsewhere(repos, "state/equity.txt", "day 1 (corrected by hand)\n", "hand edit")
    runner = repos["runner"]
    (runner / "state" / "equity.txt").write_text("day 1 (rewritten by the job)\n")
    remote_before = _remote_log(repos)
    result, outputs = _push(repos, "daily", "state", attempts=2)
    assert result.returncode == 1
    assert result.stderr.count("rebasing on origin/main failed") == 2
    assert "could not push to origin/main after 2 attempts" in result.stderr
    assert _remote_log(repos) == remote_before  # nothing pushed
    assert not (runner / ".git" / "rebase-merge").exists() and not (runner / ".git" / "rebase-apply").exists()
    assert _git(runner, "status", "--porcelain", env=repos["env"]) == ""  # no half-merged files left
    assert _git(runner, "log", "-1", "--format=%s", env=repos["env"]) == "daily"  # the commit is kept locally
    assert "pushed" not in outputs


def test_push_of_a_file_not_written_yet_is_a_no_op(repos):
    result, outputs = _push(repos, "monitor", "state/reports")
    assert result.returncode == 0, result.stderr
    assert outputs["pushed"] == "false"


def test_push_sends_the_token_as_a_header_not_in_git_config(repos):
    """The token reaches git through its environment (GIT_CONFIG_*): never .git/config, never argv."""
    real_git = shutil.which("git")
    bin_dir = repos["tmp"] / "bin"
    bin_dir.mkdir()
    seen = repos["tmp"] / "seen"
    (bin_dir / "git").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = push ]; then
          {real_git} config --get-regexp 'http\\..*\\.extraheader' >>'{seen}'
          printf 'argv: %s\\n' "$*" >>'{seen}'
        fi
        exec {real_git} "$@"
    """))
    (bin_dir / "git").chmod(0o755)
    (repos["runner"] / "state" / "equity.txt").write_text("day 2\n")
    result, _ = _push(repos, "daily", "state", GITHUB_TOKEN="t0ken", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    header, argv = seen.read_text().splitlines()
    assert header == "http.https://github.com/.extraheader AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46dDBrZW4="
    assert "t0ken" not in argv and "eC1h" not in argv  # base64 of x-access-token:t0ken
    assert "t0ken" not in (repos["runner"] / ".git" / "config").read_text()
    assert "eC1h" not in (repos["runner"] / ".git" / "config").read_text()


# --- commit-state.sh ---------------------------------------------------------------------------


def test_commit_state_asks_the_engine_only_when_something_changed(repos):
    # A holiday in a new repository: no state to describe, nothing to commit, no error.
    runner = repos["runner"]
    shutil.rmtree(runner / "state")
    _git(runner, "commit", "--quiet", "-am", "no state yet", env=repos["env"])
    env = _git_env(repos["home"], PUSH_ATTEMPTS="1", PUSH_BACKOFF_SECONDS="0",
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run([str(SCRIPTS / "commit-state.sh"), "daily", "state"], cwd=runner, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "nothing changed" in result.stdout


def test_push_only_pushes_the_local_commits_and_says_when_there_are_none(repos):
    runner, env = repos["runner"], repos["env"]
    result, outputs = _push_only(repos)
    assert result.returncode == 0 and "nothing to push" in result.stdout
    assert outputs["pushed"] == "false"
    (runner / "state" / "equity.txt").write_text("day 1\nday 2\n")
    _git(runner, "commit", "--quiet", "-am", "2026-11-24: NAV 10,000.00 EUR", env=env)
    _commit_elsewhere(repos, "state/alerts.jsonl", '{"n": 1}\n{"n": 2}\n', "monitor: 1 alert")
    result, outputs = _push_only(repos)
    assert result.returncode == 0, result.stderr
    assert [ln.split("|")[0] for ln in _remote_log(repos)][:2] == ["2026-11-24: NAV 10,000.00 EUR",
                                                                   "monitor: 1 alert"]
    assert outputs == {"pushed": "true", "sha": _git(repos["remote"], "rev-parse", "main", env=env)}


def test_commit_only_mode_commits_and_pushes_nothing(repos):
    (repos["runner"] / "state" / "equity.txt").write_text("day 1\nday 2\n")
    before = _remote_log(repos)
    env = _git_env(repos["home"])
    result = subprocess.run([str(SCRIPTS / "push-with-retry.sh"), "--no-push", "daily", "state"],
                            cwd=repos["runner"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert _remote_log(repos) == before
    assert _git(repos["runner"], "log", "-1", "--format=%s|%ae", env=repos["env"]) == f"daily|{BOT_EMAIL}"


def _push_only(repos):
    out = repos["tmp"] / "github_output"
    out.unlink(missing_ok=True)
    env = _git_env(repos["home"], PUSH_ATTEMPTS="2", PUSH_BACKOFF_SECONDS="0", GITHUB_OUTPUT=str(out))
    result = subprocess.run([str(SCRIPTS / "push-with-retry.sh")], cwd=repos["runner"], env=env,
                            capture_output=True, text=True, timeout=60)
    return result, dict(line.split("=", 1) for line in out.read_text().splitlines())


def test_commit_state_commits_with_the_engines_message(repos, tmp_path):
    from engine.cli import main

    runner = repos["runner"]
    shutil.rmtree(runner / "state")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--sessions", "3", "--end", "2024-06-28", "--no-site"]) == 0
    shutil.copytree(tmp_path / "demo" / "state", runner / "state")
    env = _git_env(repos["home"], PUSH_ATTEMPTS="1", PUSH_BACKOFF_SECONDS="0",
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    before = _remote_log(repos)
    result = subprocess.run([str(SCRIPTS / "commit-state.sh"), "daily", "state"], cwd=runner, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _remote_log(repos) == before  # committed, not pushed: the push step holds the token
    subject = _git(runner, "log", "-1", "--format=%s", env=repos["env"])
    assert re.fullmatch(r"2024-06-28: NAV [\d,]+\.\d\d EUR, \d+ orders?, policy rules", subject), subject


# --- report-failure.sh with a fake gh -------------------------------------------------------------

FAKE_GH = """\
#!{python}
# A stand-in for the GitHub CLI: records every call, answers `issue list` from FAKE_GH_ISSUES.
import json, os, re, sys
args = sys.argv[1:]
call = {{"args": args}}
if args[:2] in (["issue", "create"], ["issue", "comment"]):
    source = args[args.index("--body-file") + 1]
    call["body"] = sys.stdin.read() if source == "-" else open(source).read()
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(call) + "\\n")
if os.environ.get("FAKE_GH_FAIL") == " ".join(args[:2]):
    sys.exit(os.environ.get("FAKE_GH_ERROR", "HTTP 401: Bad credentials"))
if args[:2] == ["issue", "list"]:
    issues = json.loads(os.environ.get("FAKE_GH_ISSUES", "[]"))
    jq = args[args.index("--jq") + 1]
    wanted = re.search(r'select\\(\\.title == "(.*)"\\)', jq).group(1)
    for issue in issues:
        if issue["title"] == wanted:
            print(issue["number"])
"""


@pytest.fixture
def fake_gh(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable))
    gh.chmod(0o755)
    log = tmp_path / "gh.log"

    def run(workflow: str = "daily", issues: list[dict] | None = None, **extra: str):
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GH_LOG": str(log),
               "FAKE_GH_ISSUES": json.dumps(issues or []), "GH_TOKEN": "fake", "GH_REPO": "owner/repo",
               "RUN_URL": "https://github.com/owner/repo/actions/runs/42",
               "DETAIL": "error: market data unavailable: EURUSD=X has no bar for 2026-11-24",
               "RUN_RESULT": "failure", "PAGES_RESULT": "skipped", "ENGINE_EXIT": "3", "EVENT": "schedule",
               **extra}
        result = subprocess.run([str(SCRIPTS / "report-failure.sh"), workflow], env=env, capture_output=True,
                                text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return result, calls

    return run


def test_report_failure_opens_an_issue_when_none_is_open(fake_gh):
    result, calls = fake_gh(issues=[{"number": 3, "title": "monitor run failed"}])
    assert result.returncode == 0, result.stderr
    kinds = [c["args"][:2] for c in calls]
    assert kinds == [["label", "create"], ["issue", "list"], ["issue", "create"]]
    listing = calls[1]["args"]
    assert listing[listing.index("--label") + 1] == "pipeline-failure"
    assert listing[listing.index("--state") + 1] == "open"
    create = calls[2]["args"]
    assert create[create.index("--title") + 1] == "daily run failed"
    assert create[create.index("--label") + 1] == "pipeline-failure"
    body = calls[2]["body"]
    assert "error: market data unavailable: EURUSD=X has no bar for 2026-11-24" in body
    assert "https://github.com/owner/repo/actions/runs/42" in body
    assert "last good commit" in body and "Jobs: daily failure, pages skipped (engine exit code 3)" in body


def test_report_failure_comments_on_the_open_issue(fake_gh):
    result, calls = fake_gh(issues=[{"number": 3, "title": "monitor run failed"},
                                    {"number": 7, "title": "daily run failed"}])
    assert result.returncode == 0, result.stderr
    assert [c["args"][:2] for c in calls][-1] == ["issue", "comment"]
    assert calls[-1]["args"][2] == "7"
    assert "market data unavailable" in calls[-1]["body"]
    assert not any(c["args"][:2] == ["issue", "create"] for c in calls)
    assert "commented on issue #7" in result.stdout


def test_report_failure_says_so_when_gh_fails(fake_gh):
    result, calls = fake_gh(FAKE_GH_FAIL="issue list")
    assert result.returncode != 0
    assert "HTTP 401" in result.stderr and result.stdout.startswith("::error title=daily run failed::")
    assert not any(c["args"][:2] == ["issue", "create"] for c in calls)


def test_with_issues_disabled_the_failure_is_an_annotation_and_the_job_stays_green(fake_gh):
    """A new fork has Issues off: gh answers HTTP 410; the run still says what failed."""
    result, calls = fake_gh(FAKE_GH_FAIL="issue list",
                            FAKE_GH_ERROR="HTTP 410: Issues are disabled for this repo (https://api.github.com/...)")
    assert result.returncode == 0, result.stderr
    (annotation,) = [ln for ln in result.stdout.splitlines() if ln.startswith("::error")]
    assert annotation.startswith("::error title=daily run failed::Market data unavailable (exit 3)")
    assert "EURUSD=X has no bar for 2026-11-24" in annotation and "actions/runs/42" in annotation
    assert not any(c["args"][:2] == ["issue", "create"] for c in calls)


@pytest.mark.parametrize(
    ("env", "says", "never"),
    [
        ({"ENGINE_EXIT": "2", "DETAIL": "error: OPENAI_API_KEY is not set"},
         "Configuration error (exit 2): fix it before the next run", "catches up"),
        ({"ENGINE_EXIT": "3"}, "the next run (the second attempt a few hours later, or the next evening) catches up",
         "fix before"),
        ({"ENGINE_EXIT": "4", "DETAIL": "error: state/portfolio.json is not valid JSON"},
         "Corrupt state (exit 4): fix before the next run", "catches up"),
        ({"ENGINE_EXIT": "7", "DETAIL": "error: the LLM server refused the key (HTTP 401 invalid_api_key)"},
         "The LLM cannot be used as configured (exit 7): fix before the next run", "catches up"),
        ({"ENGINE_EXIT": "9"}, "locked by another run (exit 9)", "fix before"),
        ({"ENGINE_EXIT": "0", "DETAIL": "error: could not push to origin/main after 5 attempts"},
         "committing or pushing state/ failed: nothing reached the repository", "catches up"),
        ({"ENGINE_EXIT": ""}, "stopped before the engine finished", "catches up"),
        ({"RUN_RESULT": "cancelled", "ENGINE_EXIT": ""}, "cancelled or ran out of time", "fix before"),
        ({"RUN_RESULT": "success", "PAGES_RESULT": "failure", "ENGINE_EXIT": "0", "PUSHED": "true",
          "DETAIL": ""}, "The state was committed and pushed; only the site", "Nothing was committed"),
    ],
)
def test_the_failure_text_follows_the_failed_job_and_the_exit_code(fake_gh, env, says, never):
    result, calls = fake_gh(**env)
    assert result.returncode == 0, result.stderr
    body = calls[-1]["body"]
    assert says in body
    assert never.lower() not in body.lower()


def test_report_failure_without_detail_points_to_the_log(fake_gh):
    result, calls = fake_gh(workflow="weekly", DETAIL="")
    assert result.returncode == 0, result.stderr
    assert "see the log" in calls[-1]["body"]
    assert calls[-1]["args"][calls[-1]["args"].index("--title") + 1] == "weekly run failed"


def test_report_failure_refuses_a_name_that_could_break_the_query(fake_gh):
    result, calls = fake_gh(workflow='daily") | .number, ("x')
    assert result.returncode == 2 and calls == []


# --- failure-detail.sh ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log", "detail"),
    [
        ("INFO catching up\nerror: the yahoo data has no bar for 2026-11-24 yet: run again after the close\n",
         "error: the yahoo data has no bar for 2026-11-24 yet: run again after the close"),
        ("committed: x\nwarning: attempt 1\nerror: could not push to origin/main after 5 attempts\n\n",
         "error: could not push to origin/main after 5 attempts"),
        ("Traceback (most recent call last):\n  File x\nKeyError: 'nav'\n", "KeyError: 'nav'"),
        ("", ""),
        (None, ""),
    ],
)
def test_failure_detail_is_the_last_error_line(tmp_path, log, detail):
    path = tmp_path / "job.log"
    if log is not None:
        path.write_text(log)
    result = subprocess.run([str(SCRIPTS / "failure-detail.sh"), str(path)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"detail={detail}\n"
