"""The workflows end to end, offline: a fresh fork's first days against a local bare "origin".

The jobs of .github/workflows/ are executed the way a runner would: each job checks out the
origin's branch tip into its own folder, and every `run:` script is the workflow's own text,
run with GitHub's `bash --noprofile --norc -eo pipefail`, with the step's `env:` evaluated
(secrets empty, `vars.POLICY` = rules), `$GITHUB_OUTPUT` and `$RUNNER_TEMP` provided, and
`if:` conditions, job outputs and `needs` honoured. What stands in for GitHub: `actions/*`
steps (checkout is a clone at the tip, the cache is a folder, the Pages deployment is a copy),
`gh` (a fake that records the issues), the clock (ALMOST_SURELY_NOW) and the market (the
scripts' `--source yahoo` becomes `--source demo`: no network). The install steps are not run
(the test environment already holds the locked packages; test_workflows.py checks that they
install requirements.txt with hashes).

The story: a fork with no state/ on Monday morning runs `pages`, `weekly` and `monitor` by hand
(a placeholder site, no failure issue); ten scheduled dailies follow (Thanksgiving included),
with second attempts that change nothing, a monitor run and a daily run that start from the same
commit, and one daily that fails (the LLM policy without a key): one issue, nothing committed,
the next day catches up; the weekly report written before its Friday was stored is redone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
PROJECT = ("engine", "docs", "site", "mkdocs.yml", ".github", "requirements.txt", "pyproject.toml", "README.md",
           ".gitignore")
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
GH = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_GH_LOG"]
issues = json.load(open(log)) if os.path.exists(log) else []
if args[:2] == ["issue", "list"]:
    for i in issues:
        if i["state"] == "open":
            print(i["number"])  # one open issue per title in this story
elif args[:2] == ["issue", "create"]:
    body = open(args[args.index("--body-file") + 1]).read()
    issues.append({{"number": len(issues) + 1, "title": args[args.index("--title") + 1], "state": "open",
                    "comments": [body]}})
elif args[:2] == ["issue", "comment"]:
    issues[int(args[2]) - 1]["comments"].append(open(args[args.index("--body-file") + 1]).read())
json.dump(issues, open(log, "w"))
"""


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


@dataclass
class Job:
    result: str = "success"
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class Fork:
    """A bare origin, a fake GitHub (issues, Pages, cache) and the runner's clock."""

    root: Path
    now: str = ""
    vars: dict[str, str] = field(default_factory=lambda: {"POLICY": "rules"})
    runs: int = 0
    # Whether a workflow's call of pages.yml builds and deploys the site for real (about 5 s of
    # CPU each); otherwise the call is recorded as due but not built, to keep the story short.
    build_site: bool = True

    def __post_init__(self) -> None:
        self.origin = self.root / "origin.git"
        self.deployed = self.root / "pages"
        self.cache = self.root / "actions-cache"
        self.home = self.root / "home"
        self.bin = self.root / "bin"
        for d in (self.home, self.bin):
            d.mkdir(parents=True)
        (self.bin / "gh").write_text(GH.format(python=sys.executable))
        (self.bin / "gh").chmod(0o755)
        self.git("init", "--quiet", "--bare", "-b", "main", str(self.origin), cwd=self.root)
        seed = self.root / "seed"
        self.git("clone", "--quiet", str(self.origin), str(seed), cwd=self.root)
        for name in PROJECT:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, seed / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, seed / name)
        self.git("checkout", "--quiet", "-b", "main", cwd=seed)
        self.git("add", ".", cwd=seed)
        self.git("commit", "--quiet", "-m", "Fork of almost surely", cwd=seed, person="Forker")
        self.git("push", "--quiet", "origin", "main", cwd=seed)

    # -- plumbing -------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(HOME=str(self.home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(self.home / ".gitconfig"),
                   PATH=f"{self.bin}:{Path(sys.executable).parent}:{os.environ['PATH']}",
                   FAKE_GH_LOG=str(self.root / "issues.json"), PUSH_BACKOFF_SECONDS="0", MPLBACKEND="Agg")
        env.update(extra)
        return env

    def git(self, *args: str, cwd: Path, person: str | None = None) -> str:
        env = self.env()
        if person:
            env.update(GIT_AUTHOR_NAME=person, GIT_AUTHOR_EMAIL="f@example.org", GIT_COMMITTER_NAME=person,
                       GIT_COMMITTER_EMAIL="f@example.org")
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def tip(self) -> str:
        return self.git("rev-parse", "main", cwd=self.origin)

    def log(self) -> list[str]:
        return self.git("log", "--format=%s", "main", cwd=self.origin).splitlines()

    def show(self, path: str) -> str:
        return self.git("show", f"main:{path}", cwd=self.origin)

    def issues(self) -> list[dict]:
        path = self.root / "issues.json"
        return json.loads(path.read_text()) if path.exists() else []

    # -- expressions ----------------------------------------------------------------------

    def value(self, expr: str, ctx: dict[str, object]) -> str:
        if "||" in expr:
            return next((v for v in (self.value(e.strip(), ctx) for e in expr.split("||")) if v), "")
        if " == " in expr:
            left, right = expr.split(" == ")
            return "true" if self.value(left.strip(), ctx) == right.strip().strip("'") else "false"
        head, _, rest = expr.partition(".")
        if head == "secrets":
            return ""  # no OPENAI_API_KEY in this fork yet
        if head == "vars":
            return self.vars.get(rest, "")
        if head == "inputs":
            return str(ctx["inputs"].get(rest, ""))
        if expr == "github.token":
            return "fake-token"
        if expr == "github.ref":
            return "refs/heads/main"
        if head == "github":
            return {"event_name": str(ctx["event"]), "repository": "forker/trading", "run_id": str(self.runs),
                    "run_attempt": "1", "server_url": "https://github.com"}[rest]
        if head == "steps":
            step, _, key = rest.partition(".outputs.")
            return ctx["steps"].get(step, {}).get(key, "")
        if head == "needs":
            job, _, key = rest.partition(".")
            needed: Job = ctx["needs"][job]
            return needed.result if key == "result" else needed.outputs.get(key.removeprefix("outputs."), "")
        raise AssertionError(f"the simulation cannot evaluate ${{{{ {expr} }}}}")

    def expand(self, text: str, ctx: dict[str, object]) -> str:
        return EXPR.sub(lambda m: self.value(m[1], ctx), str(text))

    # -- running workflows ----------------------------------------------------------------

    def run_workflow(self, name: str, event: str = "schedule", inputs: dict | None = None,
                     before_step: tuple[str, Callable[[], None]] | None = None) -> dict[str, Job]:
        """Run every job of `name` in `needs` order; `before_step` (step name, callback) runs
        the callback just before that step of the `run` job (another workflow, for a race)."""
        self.runs += 1
        doc = _load(name)
        jobs: dict[str, Job] = {}
        ctx = {"inputs": inputs or {}, "event": event, "needs": jobs}
        for job_id, job in doc["jobs"].items():
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            failed = any(jobs[n].result == "failure" for n in needs)
            cond = job.get("if")
            if cond == "failure()":
                go = failed
            elif failed or any(jobs[n].result == "skipped" for n in needs):
                go = False
            else:
                go = cond is None or self.value(cond, ctx) == "true"
            if not go:
                jobs[job_id] = Job(result="skipped")
                continue
            if "uses" in job and not self.build_site:
                jobs[job_id] = Job(result="success", outputs={"built": "no"})
                continue
            if "uses" in job:  # the reusable pages workflow
                called = {k: self.expand(v, ctx) for k, v in job.get("with", {}).items()}
                inner = self.run_workflow(job["uses"].rsplit("/", 1)[1], "workflow_call", called)
                jobs[job_id] = Job(result="failure" if any(j.result == "failure" for j in inner.values())
                                   else "success")
                continue
            jobs[job_id] = self._job(job_id, job, ctx, before_step if job_id == "run" else None)
        return jobs

    def _job(self, job_id: str, job: dict, ctx: dict, before_step) -> Job:
        work = self.root / "runs" / f"{self.runs:03d}-{job_id}"
        temp = work / "runner-temp"
        temp.mkdir(parents=True)
        checkout = work / "repo"
        steps: dict[str, dict[str, str]] = {}
        ctx = {**ctx, "steps": steps}
        result, log = "success", []
        for i, step in enumerate(job["steps"]):
            cond = step.get("if")
            if not (cond == "always()" or (cond == "failure()") == (result == "failure")):
                continue
            if before_step and step.get("name") == before_step[0]:
                before_step[1]()
            outputs_file = temp / f"output-{i}"
            outputs_file.touch()
            ok = self._step(step, ctx, checkout, temp, outputs_file, log)
            steps[step.get("id", f"_{i}")] = dict(
                line.split("=", 1) for line in outputs_file.read_text().splitlines() if "=" in line)
            if not ok:
                result = "failure"
        outputs = {k: self.expand(v, ctx) for k, v in job.get("outputs", {}).items()}
        return Job(result=result, outputs=outputs, log="\n".join(log))

    def _step(self, step: dict, ctx: dict, checkout: Path, temp: Path, outputs_file: Path, log: list) -> bool:
        uses = step.get("uses", "")
        args = {k: self.expand(v, ctx) for k, v in step.get("with", {}).items()}
        if uses.startswith("actions/checkout@"):
            self.git("clone", "--quiet", str(self.origin), str(checkout), cwd=self.root)
            ref = args.get("ref") or "refs/heads/main"
            if not ref.startswith("refs/heads/"):
                self.git("checkout", "--quiet", "--detach", ref, cwd=checkout)
            return True
        if uses.startswith("actions/setup-python@"):
            return True  # this interpreter's folder is on PATH
        if uses.startswith("actions/cache/restore@"):
            if self.cache.exists():
                shutil.copytree(self.cache, checkout / args["path"], dirs_exist_ok=True)
            return True
        if uses.startswith("actions/cache/save@"):
            if (checkout / args["path"]).exists():
                shutil.copytree(checkout / args["path"], self.cache, dirs_exist_ok=True)
            return True
        if uses.startswith("actions/upload-pages-artifact@"):
            site = checkout / args["path"]
            if not (site / "index.html").exists():
                return False
            shutil.rmtree(self.root / "artifact", ignore_errors=True)
            shutil.copytree(site, self.root / "artifact")
            return True
        if uses.startswith("actions/deploy-pages@"):
            shutil.rmtree(self.deployed, ignore_errors=True)
            shutil.copytree(self.root / "artifact", self.deployed)
            return True
        assert not uses, f"the simulation does not know {uses}"
        script = step["run"]
        if script.lstrip().startswith("python -m pip install"):
            assert "--require-hashes" in script
            return True  # the locked packages are those of this environment already
        script = script.replace("--source yahoo", "--source demo")
        env = self.env(GITHUB_OUTPUT=str(outputs_file), RUNNER_TEMP=str(temp), GITHUB_ACTIONS="true",
                       ALMOST_SURELY_NOW=self.now)
        env.update({k: self.expand(v, ctx) for k, v in step.get("env", {}).items()})
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=checkout if checkout.exists() else self.root, env=env, capture_output=True,
                              text=True, timeout=300)
        log.append(f"$ {step.get('name', script[:40])}\n{proc.stdout}{proc.stderr}")
        return proc.returncode == 0


def day_commits(fork: Fork) -> list[tuple[str, int]]:
    """(subject, bytes of `git diff` with binary patches) for every daily commit on the origin."""
    out = []
    for line in fork.git("log", "--format=%H %s", "main", cwd=fork.origin).splitlines():
        sha, subject = line.split(" ", 1)
        if re.match(r"\d{4}-\d\d-\d\d: NAV", subject):
            patch = subprocess.run(["git", "diff", "--binary", f"{sha}~1", sha], cwd=fork.origin,
                                   env=fork.env(), capture_output=True, check=True).stdout
            out.append((subject, len(patch)))
    return out


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> dict:
    """The fork's first two weeks; every assertion below reads what it left behind."""
    fork = Fork(tmp_path_factory.mktemp("fork"))
    seen: dict[str, object] = {}

    # Monday 2026-11-16, morning: the guide's first runs, by hand, on a fork with no state/.
    fork.now = "2026-11-16T08:00:00+00:00"
    seen["pages by hand"] = fork.run_workflow("pages.yml", "workflow_dispatch")
    seen["placeholder"] = (fork.deployed / "index.html").read_text(encoding="utf-8")
    seen["weekly by hand"] = fork.run_workflow("weekly.yml", "workflow_dispatch", {"week": ""})
    seen["monitor by hand"] = fork.run_workflow("monitor.yml", "workflow_dispatch")
    seen["tip after the guide"] = fork.tip()

    fork.build_site = False  # built for real on the first and the last day only
    days = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20",
            "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]
    seen["daily"] = {}
    for day in days:
        fork.build_site = day in ("2026-11-16", "2026-11-27")
        if day == "2026-11-20":  # the key-less LLM policy: a configuration error
            fork.vars["POLICY"] = "llm"
        if day == "2026-11-18":  # a monitor and a daily that start from the same commit
            def monitor_meanwhile() -> None:
                fork.now = "2026-11-18T20:47:00+00:00"
                seen["race monitor"] = fork.run_workflow("monitor.yml")
                seen["tip after the race monitor"] = fork.tip()
                fork.now = f"{day}T22:31:00+00:00"

            fork.now = f"{day}T22:30:00+00:00"
            seen["daily"][day] = fork.run_workflow("daily.yml", before_step=("Push", monitor_meanwhile))
        else:
            fork.now = f"{day}T22:30:00+00:00"
            seen["daily"][day] = fork.run_workflow("daily.yml")
        fork.vars["POLICY"] = "rules"
        fork.build_site = False
        if day == "2026-11-17":  # the second attempt, four hours later: a no-op
            fork.now = "2026-11-18T02:30:00+00:00"
            tip = fork.tip()
            seen["second attempt"] = fork.run_workflow("daily.yml")
            seen["tip unchanged by the second attempt"] = fork.tip() == tip
        if day in ("2026-11-20", "2026-11-27"):  # Saturday 03:30 UTC
            fork.now = f"{day[:8]}{int(day[8:]) + 1}T03:30:00+00:00"
            seen[f"weekly {day}"] = fork.run_workflow("weekly.yml")
            seen[f"W47 after {day}"] = fork.show("state/reports/2026-W47.md")
    seen["fork"] = fork
    seen["site"] = (fork.deployed / "index.html").read_text(encoding="utf-8")
    return seen


def _ok(jobs: dict[str, Job], **expected: str) -> None:
    got = {k: j.result for k, j in jobs.items()}
    assert got == expected, {k: j.log[-3000:] for k, j in jobs.items() if j.log}


def test_the_guides_first_runs_deploy_a_placeholder_and_open_no_issue(story):
    _ok(story["pages by hand"], build="success", deploy="success")
    assert "The experiment starts at the next session" in story["placeholder"]
    _ok(story["weekly by hand"], run="success", pages="skipped", **{"report-failure": "skipped"})
    _ok(story["monitor by hand"], run="success", pages="skipped", **{"report-failure": "skipped"})
    assert story["fork"].log()[-1] == "Fork of almost surely"
    assert story["tip after the guide"] == story["fork"].git("rev-list", "--max-parents=0", "main",
                                                             cwd=story["fork"].origin)


def test_the_first_scheduled_run_commits_the_first_session_and_deploys_it(story):
    first = story["daily"]["2026-11-16"]
    _ok(first, run="success", pages="success", **{"report-failure": "skipped"})
    fork = story["fork"]
    oldest_day = [s for s in fork.log() if s.startswith("2026-")][-1]
    assert oldest_day.startswith("2026-11-16: NAV 10,000.00 EUR")
    record = json.loads(fork.git("show", f"{first['run'].outputs['sha']}:state/decisions/2026/11-16.json",
                                 cwd=fork.origin))
    assert record["engine"]["version"] and len(record["engine"]["lock_sha256"]) == 64


def test_ten_days_book_every_session_once_thanksgiving_included(story):
    fork = story["fork"]
    equity_dates = [line.split(":")[0] for line in fork.log() if re.match(r"\d{4}-\d\d-\d\d: NAV", line)]
    assert sorted(equity_dates) == ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19",
                                    "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]
    portfolio = json.loads(fork.show("state/portfolio.json"))
    assert portfolio["as_of"] == "2026-11-27"
    assert "2026-11-20" in fork.show("state/decisions/2026/11-20.json")  # caught up on Monday
    assert "2026-11-27" in story["site"]  # the last day's deployment
    assert story["daily"]["2026-11-27"]["pages"].outputs.get("built") != "no"  # built for real


def test_the_second_attempt_is_a_no_op_that_deploys_nothing(story):
    _ok(story["second attempt"], run="success", pages="skipped", **{"report-failure": "skipped"})
    assert story["tip unchanged by the second attempt"]
    assert story["second attempt"]["run"].outputs["pushed"] == "false"


def test_a_monitor_and_a_daily_from_the_same_commit_both_land(story):
    _ok(story["race monitor"], run="success", pages="success", **{"report-failure": "skipped"})
    daily = story["daily"]["2026-11-18"]
    _ok(daily, run="success", pages="success", **{"report-failure": "skipped"})
    fork = story["fork"]
    race_tip = story["tip after the race monitor"]
    subjects = fork.git("log", "--format=%s", f"{race_tip}~1..main", cwd=fork.origin).splitlines()
    assert any("alert" in s for s in subjects)  # the monitor's push landed first ...
    # ... and the daily was rebased on it, not rejected
    assert fork.git("merge-base", "--is-ancestor", race_tip, daily["run"].outputs["sha"], cwd=fork.origin) == ""
    assert "alerts" not in fork.git("show", "--name-only", "--format=", daily["run"].outputs["sha"], cwd=fork.origin)


def test_a_failed_daily_commits_nothing_opens_one_issue_and_the_next_day_catches_up(story):
    failed = story["daily"]["2026-11-20"]
    _ok(failed, run="failure", pages="skipped", **{"report-failure": "success"})
    assert failed["run"].outputs["engine-exit"] == "2"
    (issue,) = story["fork"].issues()  # the only issue of the whole story
    assert issue["title"] == "daily run failed"
    body = issue["comments"][0]
    assert "Configuration error (exit 2): fix it before the next run" in body
    assert "OPENAI_API_KEY is not set" in body
    monday = story["daily"]["2026-11-23"]
    _ok(monday, run="success", pages="success", **{"report-failure": "skipped"})


def test_the_weekly_report_written_before_friday_was_stored_is_redone(story):
    _ok(story["weekly 2026-11-20"], run="success", pages="success", **{"report-failure": "skipped"})
    assert "4 of 5 sessions" in story["W47 after 2026-11-20"]  # Friday's daily had failed
    _ok(story["weekly 2026-11-27"], run="success", pages="success", **{"report-failure": "skipped"})
    late = story["W47 after 2026-11-27"]
    assert "in progress" not in late and "2026-11-20" in late


def test_a_daily_commit_stays_small(story):
    sizes = day_commits(story["fork"])
    assert len(sizes) == 9
    assert max(n for _, n in sizes) < 200_000, sizes  # bytes of `git diff --binary` per day
