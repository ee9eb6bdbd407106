"""Run the GPU plan (plan.yaml) stage by stage, skipping what is already committed.

    python experiments/device/plan.py --list                 # stages and their state
    python experiments/device/plan.py --smoke                # every stage on the CPU, tiny
    python experiments/device/plan.py --budget 540 --lanes 2 # on a GPU (experiments/device/run.sh)

A stage is done when ``<results>/<name>/metrics.json`` says ``"status": "ok"`` and, for a
training stage, its checkpoint exists. Pending stages run in plan order, ``--lanes`` at a
time (one GPU is shared), each once its ``needs`` succeeded; a training stage that is done
but whose checkpoint is not committed (too large) runs again when a pending stage needs it.
A stage does not start when its estimated minutes (× ``--budget-scale``) exceed the budget
left, and a stage still running when the budget ends gets SIGTERM (its run record keeps the
T values it finished), SIGKILL 15 s later, and is recorded as killed. Every stage's run folder
(without weights) lands in ``<results>/<name>/``, whatever its outcome; ``plan_status.json``
in ``<results>`` says for each stage: ok / failed / killed / skipped, why, and its seconds.
Exit status: 0 when every attempted stage succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAN = Path(__file__).with_name("plan.yaml")
GRACE_S = 15  # seconds between SIGTERM and SIGKILL when the budget ends
WEIGHTS = ("ann.pt", "lightning_checkpoints", "*.ckpt")


@dataclass
class Stage:
    """One run.py job of the plan."""

    name: str
    experiment: str
    args: list[str] = field(default_factory=list)
    needs: str | None = None
    checkpoint: str | None = None
    commit_checkpoint: bool = True
    data: str | None = None
    minutes: float = 5.0
    smoke: list[str] = field(default_factory=list)


@dataclass
class Plan:
    table: str
    results: Path
    checkpoints: Path
    common: list[str]
    table_T: str
    smoke: list[str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def load_plan(path: Path = PLAN) -> Plan:
    """Parse plan.yaml; every ``needs`` must name an earlier training stage."""
    raw = yaml.safe_load(path.read_text())
    stages = [Stage(**s) for s in raw["stages"]]
    seen: dict[str, Stage] = {}
    for s in stages:
        if s.needs and (s.needs not in seen or not seen[s.needs].checkpoint):
            raise ValueError(f"{path}: stage {s.name} needs {s.needs}, no earlier training stage")
        seen[s.name] = s
    return Plan(
        raw["table"],
        ROOT / raw["results"],
        ROOT / raw["checkpoints"],
        list(raw["common"]),
        raw["table_T"],
        list(raw["smoke"]),
        stages,
    )


def record_ok(folder: Path) -> bool:
    """True when ``folder/metrics.json`` exists and says ``"status": "ok"``."""
    try:
        return json.loads((folder / "metrics.json").read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def pending(plan: Plan, results: Path, checkpoints: Path) -> list[Stage]:
    """The stages to run, in plan order: not done, plus the training stages a pending stage
    needs whose checkpoint is missing."""

    def done(s: Stage) -> bool:
        has_ckpt = s.checkpoint is None or (checkpoints / s.checkpoint).is_file()
        return record_ok(results / s.name) and (has_ckpt or not s.commit_checkpoint)

    todo = {s.name for s in plan.stages if not done(s)}
    for s in plan.stages:
        if s.name in todo and s.needs:
            needed = plan.stage(s.needs)
            if not (checkpoints / str(needed.checkpoint)).is_file():
                todo.add(needed.name)
    return [s for s in plan.stages if s.name in todo]


def data_path(s: Stage, data_root: Path | None) -> Path | None:
    """Where the stage's data folder is: ``s.data`` under the repository, or with its first
    component (``data/``) replaced by ``data_root``."""
    if not s.data:
        return None
    if data_root is None:
        return ROOT / s.data
    return data_root.joinpath(*Path(s.data).parts[1:])


def command(
    plan: Plan,
    s: Stage,
    run_dir: Path,
    checkpoints: Path,
    smoke: bool,
    data_root: Path | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """The run.py command line of a stage."""
    cmd = [sys.executable, str(ROOT / "run.py"), f"experiment={s.experiment}", *plan.common]
    if s.checkpoint:  # a training stage
        cmd += ["ann.checkpoint=null", f"ann.export_to={checkpoints / s.checkpoint}"]
    else:
        cmd += [f"ann.checkpoint={checkpoints / str(plan.stage(str(s.needs)).checkpoint)}"]
        cmd += [plan.table_T]
    cmd += [*s.args, f"hydra.run.dir={run_dir}"]
    if s.data:
        cmd += [f"dataset.root={data_path(s, data_root)}"]
    return cmd + ([*plan.smoke, *s.smoke] if smoke else []) + list(extra or [])


def copy_record(run_dir: Path, dest: Path) -> None:
    """The run folder without weights (ann.pt, Lightning checkpoints) into ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    if run_dir.exists():
        shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns(*WEIGHTS))


class Runner:
    """Runs the pending stages with ``lanes`` workers until done or out of budget."""

    def __init__(self, plan: Plan, args: argparse.Namespace) -> None:
        self.plan, self.args = plan, args
        self.results: Path = args.results
        self.checkpoints: Path = args.checkpoints
        self.work: Path = args.work
        self.deadline = time.monotonic() + args.budget if args.budget else float("inf")
        self.status: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def log(self, text: str) -> None:
        print(f"[plan {time.strftime('%H:%M:%S')}] {text}", flush=True)

    def save_status(self) -> None:
        self.results.mkdir(parents=True, exist_ok=True)
        path = self.results / "plan_status.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        old.update(self.status)
        path.write_text(json.dumps(old, indent=1, sort_keys=True))

    def set(self, s: Stage, state: str, **info: Any) -> None:
        with self.lock:
            self.status[s.name] = {"status": state, **info}
            self.save_status()
        self.log(f"{s.name}: {state} {info.get('reason', '')}".rstrip())

    def run_stage(self, s: Stage) -> None:
        run_dir = self.work / s.name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        cmd = command(
            self.plan, s, run_dir, self.checkpoints, self.args.smoke, self.args.data, self.args.set
        )
        (run_dir / "plan_command.txt").write_text(" ".join(cmd) + "\n")
        start = time.monotonic()
        self.set(s, "running", command=" ".join(cmd[1:]))
        with open(run_dir / "stage.log", "w") as logf:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
            killed = False
            while proc.poll() is None:
                if time.monotonic() > self.deadline and not killed:
                    proc.terminate()  # SIGTERM: the run records the T values it finished
                    killed = True
                if time.monotonic() > self.deadline + GRACE_S:
                    proc.kill()
                time.sleep(0.5)
        seconds = round(time.monotonic() - start, 1)
        copy_record(run_dir, self.results / s.name)
        if killed:
            self.set(s, "killed", reason="the plan's budget ended", seconds=seconds)
        elif proc.returncode == 0 and record_ok(run_dir):
            self.set(s, "ok", seconds=seconds)
        else:
            tail = (run_dir / "stage.log").read_text().strip().splitlines()[-1:] or [""]
            self.set(s, "failed", reason=f"exit {proc.returncode}: {tail[0]}", seconds=seconds)

    def runnable(self, s: Stage, todo: list[Stage]) -> str | None:
        """None when ``s`` can start now, "wait" while its training stage is pending, else
        the reason it is skipped."""
        folder = data_path(s, self.args.data)
        if folder is not None and not folder.is_dir():
            return f"no data at {folder} (extract or download it; see the dataset config)"
        if s.needs:
            state = self.status.get(s.needs, {}).get("status")
            if state in ("failed", "killed", "skipped", "deferred"):
                return f"{s.needs} {state}"
            if any(t.name == s.needs for t in todo) and state != "ok":
                return "wait"
        if time.monotonic() + 60 * s.minutes * self.args.budget_scale > self.deadline:
            return "budget"
        return None

    def run(self) -> int:
        todo = pending(self.plan, self.results, self.checkpoints)
        if self.args.only:
            todo = [s for s in todo if s.name in self.args.only]
        self.log(f"pending: {', '.join(s.name for s in todo) or 'nothing'}")
        threads: dict[str, threading.Thread] = {}
        waiting = list(todo)
        while waiting or threads:
            for name in [n for n, t in threads.items() if not t.is_alive()]:
                del threads[name]
            for s in list(waiting):
                if len(threads) >= self.args.lanes:
                    break
                why = self.runnable(s, todo)
                if why == "wait":
                    continue
                waiting.remove(s)
                if why == "budget":
                    self.set(s, "deferred", reason="not enough budget left; the next run does it")
                elif why is not None:
                    self.set(s, "skipped", reason=why)
                else:
                    threads[s.name] = threading.Thread(target=self.run_stage, args=(s,))
                    threads[s.name].start()
            time.sleep(0.2)
        bad = [n for n, v in self.status.items() if v["status"] in ("failed", "killed")]
        self.render()
        return 1 if bad else 0

    def render(self) -> None:
        """Render the table from every committed and new stage record."""
        out = self.results / "tables"
        cmd = [sys.executable, str(ROOT / "experiments/render.py"), self.plan.table]
        cmd += [str(self.results), "--out", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        self.log(f"render {self.plan.table}: exit {proc.returncode} -> {out}")
        if proc.returncode:
            self.log(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=PLAN)
    parser.add_argument("--smoke", action="store_true", help="the CPU, tiny data, one epoch, T=2")
    parser.add_argument("--results", type=Path, help="stage records (default: the plan's)")
    parser.add_argument("--checkpoints", type=Path, help="checkpoints (default: the plan's)")
    parser.add_argument("--work", type=Path, help="run folders (default: <results>/../.work)")
    parser.add_argument("--budget", type=float, default=0, help="seconds (0: no limit)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="× stage minutes")
    parser.add_argument("--lanes", type=int, default=1, help="stages run at the same time")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), help="stage names")
    parser.add_argument("--data", type=Path, help="folder that replaces data/ in stage data")
    parser.add_argument("--set", action="append", default=[], help="extra run.py override")
    parser.add_argument("--list", action="store_true", help="print the stages and exit")
    args = parser.parse_args(argv)
    plan = load_plan(args.plan)
    unknown = sorted((args.only or set()) - {s.name for s in plan.stages})
    if unknown:
        parser.error(f"--only names no stage of {args.plan.name}: {', '.join(unknown)}")
    if args.smoke:
        base = args.work or Path("outputs/plan_smoke")
        args.results = args.results or base / "results"
        args.checkpoints = args.checkpoints or base / "checkpoints"
        args.budget_scale = 0.0  # smoke stages take seconds, whatever the GPU estimate
    args.results = (args.results or plan.results).resolve()
    args.checkpoints = (args.checkpoints or plan.checkpoints).resolve()
    args.work = (args.work or args.results.parent / ".work").resolve()
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    if args.list:
        todo = {s.name for s in pending(plan, args.results, args.checkpoints)}
        for s in plan.stages:
            print(f"{s.name:22s} {'pending' if s.name in todo else 'done':8s} ~{s.minutes:g} min")
        return 0
    return Runner(plan, args).run()


if __name__ == "__main__":
    sys.exit(main())
