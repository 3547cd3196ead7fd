"""The ``calhub outlook-agent`` command line (registered in the ``calhub.commands`` group).

Kept light: ``calhub`` loads it to build its parser, so aiohttp and the agent are imported
only when the command runs. Exit status: 0 after Ctrl-C, 2 when it cannot serve at all (no
token, Outlook missing, unknown profile, token refused), each with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

TOKEN_ENV = "CALHUB_OUTLOOK_TOKEN"


class OutlookAgentCommand:
    """``calhub outlook-agent --hub URL --agent ID [--profile NAME] [--ca-file PEM]
    [--object-model MODULE:CALLABLE] [--token-file PATH]``."""

    name = "outlook-agent"
    help = "serve this PC's Outlook (MAPI profile) to the hub's mapi provider"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.description = (
            "Runs in the agent's Windows session, drives Outlook through its object model "
            f"and serves the hub over a WebSocket it dials out. The token is ${TOKEN_ENV} "
            "or --token-file (issued by POST /agents/{id}/outlook-token)."
        )
        parser.add_argument("--hub", required=True, metavar="URL", help="the hub's admin URL")
        parser.add_argument("--agent", required=True, metavar="ID", help="the hub agent id")
        parser.add_argument(
            "--profile", metavar="NAME", help="MAPI profile (default: the running Outlook's)"
        )
        parser.add_argument("--ca-file", metavar="PEM", help="CA bundle the hub's TLS uses")
        parser.add_argument(
            "--object-model",
            metavar="MODULE:CALLABLE",
            help='returns Outlook\'s Application (default: Dispatch("Outlook.Application"))',
        )
        parser.add_argument("--token-file", metavar="PATH", type=Path, help="file with the token")
        parser.add_argument(
            "--retry-cap",
            metavar="SECONDS",
            type=float,
            default=60.0,
            help="longest wait between reconnection attempts (default 60)",
        )

    def run(self, args: argparse.Namespace) -> int:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        try:
            token = _token(args.token_file)
            if args.retry_cap <= 0:
                raise ValueError("--retry-cap: expected seconds > 0")
            return _start(args, token)
        except ValueError as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:  # Windows: Ctrl-C arrives as an exception
            logging.getLogger("calhub.outlook_agent").info("stopped")
            return 0


def _token(path: Path | None) -> str:
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"--token-file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        if not token:
            raise ValueError(f"--token-file: {path} is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(
            f"no Outlook-agent token: set {TOKEN_ENV} or pass --token-file "
            "(the hub's administrator issues it with POST /agents/{id}/outlook-token)"
        )
    return token


def _start(args: argparse.Namespace, token: str) -> int:
    from plugins.mapi.agent import AgentSettings, Refused, run_agent
    from plugins.mapi.outlook import OutlookUnavailable, load_object_model

    settings = AgentSettings(
        hub=args.hub,
        agent=args.agent,
        token=token,
        profile=args.profile,
        ca_file=args.ca_file,
        retry_cap=args.retry_cap,
    )
    try:
        factory = load_object_model(args.object_model)
        return asyncio.run(run_agent(settings, factory))
    except (OutlookUnavailable, Refused) as exc:
        return _fail(str(exc))


def _fail(message: str) -> int:
    print(f"calhub outlook-agent: {message}", file=sys.stderr)
    return 2


COMMAND = OutlookAgentCommand()
