"""The sweep as a GitHub Actions matrix: planned by the engine, run by hand, aggregated."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import yaml

from engine.cli import main

WORKFLOW = Path(__file__).parents[1] / ".github" / "workflows" / "sweep.yml"


def test_the_sweep_workflow_runs_by_hand_only_as_a_matrix_then_one_table():
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads the key `on` as True
    assert set(on) == {"workflow_dispatch"}  # nothing on a schedule
    jobs = doc["jobs"]
    assert jobs["backtest"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs["backtest"]["timeout-minutes"] > 0 and jobs["aggregate"]["needs"] == "backtest"
    assert "--max-jobs" in jobs["plan"]["steps"][-1]["run"]  # the grid's budget
    assert "--aggregate" in jobs["aggregate"]["steps"][-2]["run"]
    for job in jobs.values():
        assert job["permissions"] == {"contents": "read"}  # it writes nothing to the repository


def test_the_plan_is_the_grid_and_refuses_one_over_budget(tmp_path, capsys):
    argv = ["sweep", "--out", "out", "--plan", "--policies", "rules,hold", "--seeds", "1,2",
            "--windows", "2024-01-02:2024-02-28"]
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [j["name"] for j in plan["include"]] == [
        "rules-seed1-2024-01-02-2024-02-28", "rules-seed2-2024-01-02-2024-02-28",
        "hold-seed1-2024-01-02-2024-02-28", "hold-seed2-2024-01-02-2024-02-28"]
    assert main([*argv, "--max-jobs", "3"]) == 2
    assert "more than --max-jobs 3" in capsys.readouterr().err


def test_a_planned_job_runs_as_given_and_the_final_job_aggregates_every_arm(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--out", "out", "--plan", "--policies", "rules", "--seeds", "1",
                 "--windows", "2024-01-02:2024-02-28"]) == 0
    job = json.loads(capsys.readouterr().out)["include"][0]
    assert main(shlex.split(job["args"])) == 0
    assert main(["sweep", "--out", "out", "--aggregate"]) == 0
    capsys.readouterr()
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert set(table["arm"]) == {"rules", "random", "buy_and_hold_spy", "buy_and_hold_cac40_tracker", "equal_weight"}
    assert table.loc[table["arm"] == "buy_and_hold_spy", "p_value"].isna().all()  # the reference is not tested on itself
