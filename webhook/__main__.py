"""``python -m webhook``: the webhook on its own, same options as ``podnet webhook``."""

from __future__ import annotations

import argparse
import logging
import sys

from webhook.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m webhook")
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
