"""The README is the front door: it opens with the two commands `.ci/run` runs, stays short,
and every relative link in it (and in the docs it points to) resolves to a file."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python run.py",
    ".venv/bin/python -m pytest",
]
DOCS = ["README.md", "CONTRIBUTING.md", "docs/conventions.md", "docs/results.md"]
DOCS += [
    "benchmarks/README.md",
    *(
        f"experiments/results/{p.name}/README.md"
        for p in sorted((REPO / "experiments" / "results").iterdir())
        if (p / "README.md").exists()
    ),
]


def test_readme_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None
    assert block.group(1).strip().splitlines() == COMMANDS
    ci = (REPO / ".ci" / "run").read_text()
    assert all(command in ci for command in COMMANDS)


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for word in ("session", "issue", "this machine"):
        assert word not in text.lower(), word


def test_relative_links_resolve():
    for name in DOCS:
        path = REPO / name
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{name}: {target}"
