"""Render a paper table from sweep folders: Markdown, CSV and PNG plots.

    python experiments/render.py <table> <sweep folder> [<sweep folder> ...] [--out DIR]
    python experiments/render.py cifar10_local experiments/results/cifar10_resnet20_adaptive
    python experiments/render.py --list
    python experiments/render.py --index      # the table index of experiments/README.md

<table> is a spec name under experiments/tables/ or a path to one. The outputs go to --out
(default: the first sweep folder). --wandb-group also reads the runs of a W&B group (online).
Exit status 2 with one line naming the problem for a bad spec, an empty sweep folder or an
--out that is a file. A metrics.json that is not a run record counts as a failed job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adacal.reporting.records import wandb_runs
from adacal.reporting.render import render
from adacal.reporting.spec import SpecError, all_specs, index_markdown, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "table", nargs="?", help="spec name (experiments/tables/<name>.yaml) or path"
    )
    parser.add_argument("folders", nargs="*", type=Path, help="sweep or run folders")
    parser.add_argument("--out", type=Path, help="where to write <table>.md/.csv/.png")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--wandb-group", help="also read the runs of this W&B group (online)")
    parser.add_argument(
        "--wandb-project", default="adacal", help="entity/project for --wandb-group"
    )
    parser.add_argument("--list", action="store_true", help="list the table specs and exit")
    parser.add_argument("--index", action="store_true", help="print experiments/README.md's index")
    args = parser.parse_args(argv)
    try:
        if args.index:
            print(index_markdown(all_specs()))
            return 0
        if args.list:
            for spec in all_specs():
                print(f"{spec.name:28s} {spec.state:5s} {spec.title}")
            return 0
        if not args.table or not args.folders:
            parser.error("give a table and at least one sweep folder (or --list)")
        spec = load_spec(args.table)
        out = args.out or args.folders[0]
        if out.exists() and not out.is_dir():
            print(
                f"render: --out {out} is a file; pass a folder (created if missing)",
                file=sys.stderr,
            )
            return 2
        extra = wandb_runs(args.wandb_project, args.wandb_group) if args.wandb_group else []
        rendered = render(spec, args.folders, out, plots=not args.no_plots, extra_runs=extra)
    except SpecError as err:
        print(f"render: {err}", file=sys.stderr)
        return 2
    print(rendered.markdown)
    for kind, path in rendered.files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
