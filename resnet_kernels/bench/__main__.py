"""``python -m resnet_kernels.bench``: the report from benchmark JSON, the README's results, or the versions.

    python -m resnet_kernels.bench report RESULTS.json [MORE.json ...] [--out DIR]
    python -m resnet_kernels.bench readme RESULTS_DIR [--readme README.md]
    python -m resnet_kernels.bench versions
    python -m resnet_kernels.bench host-time [--backends triton,cuda] [--stub]
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_kernels.bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="report.md and PNG charts from pytest-benchmark JSON")
    report.add_argument("json", nargs="+", help="files written by pytest benchmarks/ --benchmark-json=FILE")
    report.add_argument("--out", help="output folder (default: the first JSON file's folder)")
    readme = commands.add_parser("readme", help="rewrite the README's results block from a results folder")
    readme.add_argument("results_dir", help="a folder of bench-*.json, report.md and charts (gpu_session.sh --out)")
    readme.add_argument("--readme", default="README.md", help="the README to update (default: ./README.md)")
    commands.add_parser("versions", help="GPU, torch, CUDA, cuDNN, Triton versions, one per line")
    host = commands.add_parser("host-time", help="host microseconds per op call and per eager ResNet-50 forward")
    host.add_argument("--backends", help="comma-separated (default: triton, and cuda where built; auto too on a GPU)")
    host.add_argument("--stub", action="store_true",
                      help="no GPU: time the triton backend with its launches stubbed out (TRITON_INTERPRET=1)")
    host.add_argument("--calls", type=int, default=200, help="calls per round (default 200)")
    args = parser.parse_args(argv)

    if args.command == "host-time":
        from .host_time import default_backends, run

        backends = args.backends.split(",") if args.backends else default_backends(args.stub)
        run(backends, args.stub, args.calls)
        return 0

    if args.command == "readme":
        from .readme import update

        try:
            count = update(args.readme, args.results_dir)
        except (OSError, ValueError) as err:
            print(f"readme: {err}", file=sys.stderr)
            return 1
        print(f"updated {args.readme} from {count} records in {args.results_dir}")
        return 0

    if args.command == "versions":
        from .environment import versions

        for name, value in versions().items():
            print(f"{name}: {value}")
        return 0

    from . import report as report_module
    from .results import load

    results = load(args.json)
    if not results.results:
        print(f"no resnet_kernels benchmark records in {', '.join(args.json)}", file=sys.stderr)
        return 1
    out = args.out or os.path.dirname(os.path.abspath(args.json[0]))
    path, goals = report_module.write(results, out)
    print(f"wrote {path}")
    for goal in goals:
        now = "-" if goal.value is None else goal.shown(goal.value)
        print(f"{goal.text:40s} {now:>8s}  {goal.status:12s} {goal.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
