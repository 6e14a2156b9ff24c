"""``podnet``: one command, a subcommand per component.

Each component adds its own subcommands (``register(subparsers)``) and handles its own
errors (one line on stderr and a non-zero status), so this module only assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from podnet import __version__
from podnet_plumbing import logs


def build_parser() -> argparse.ArgumentParser:
    from ipam import cli as ipam_cli
    from node_agent import cli as agent_cli
    from podnet import ctl, lab
    from podnet_ic import main as ic_main
    from podnet_sync import main as sync_main
    from webhook import cli as webhook_cli

    parser = argparse.ArgumentParser(
        prog="podnet",
        description="Pod networking for Kubernetes on OVN, with addresses decided at admission.",
    )
    parser.add_argument("--version", action="version", version=f"podnet {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: INFO)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    lab.register(commands)
    ipam_cli.register(commands)
    webhook_cli.register(commands)
    sync_main.register(commands)
    agent_cli.register(commands)
    ic_main.register(commands)
    ctl.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
