"""The ``lambdad`` command: ``serve`` runs the server; the rest are thin HTTP clients of it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lambdad.cli import (
    client_commands,
    durable_command,
    keys_commands,
    metrics_command,
    serve,
    traces_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambdad", description="A self-hosted AWS Lambda.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(commands)
    client_commands.add_parsers(commands)
    keys_commands.add_parser(commands)
    metrics_command.add_parser(commands)
    traces_command.add_parser(commands)
    durable_command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
