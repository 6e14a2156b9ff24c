"""``python -m webhook``: the webhook on its own, same options as ``podnet webhook``."""

from __future__ import annotations

import argparse
import sys

from podnet_plumbing import logs
from webhook.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m webhook")
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logs.configure(args.log_level)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
