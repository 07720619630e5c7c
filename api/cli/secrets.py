"""leasehold secrets: make an encryption key; re-encrypt stored secrets with the current key."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cryptography.fernet import Fernet

from leasehold.api.cli.startup import StartupError, load_settings
from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect_settings
from leasehold.scheduler.core import Scheduler


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               formatter: type[argparse.HelpFormatter]) -> None:
    text = "make a secrets key; re-encrypt stored secrets after a key change"
    parser = commands.add_parser("secrets", help=text, description=text, formatter_class=formatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> None:
        actions.add_parser(name, help=text, description=text, formatter_class=formatter)

    action("keygen", "print a new key for LEASEHOLD_SECRETS_KEY")
    action("rotate", "re-encrypt every stored secret with LEASEHOLD_SECRETS_KEY (the old key "
           "in LEASEHOLD_SECRETS_KEY_PREVIOUS; needs LEASEHOLD_REDIS_URL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "keygen":
        print(Fernet.generate_key().decode())
        return 0
    try:
        settings = load_settings()
    except StartupError as exc:  # names a wrong setting, never its value
        print(f"leasehold secrets: {exc}", file=sys.stderr)
        return exc.code
    if settings.redis_url is None or not settings.secrets_key:
        print("leasehold secrets: set LEASEHOLD_REDIS_URL and LEASEHOLD_SECRETS_KEY (and "
              "LEASEHOLD_SECRETS_KEY_PREVIOUS, LEASEHOLD_NAMESPACE if not lh)", file=sys.stderr)
        return 2
    try:
        print(f"re-encrypted {asyncio.run(_rotate(settings))} secrets")
    except errors.SchedulerError as exc:
        print(f"leasehold secrets: {exc.message}", file=sys.stderr)
        return 1
    return 0


async def _rotate(settings: Settings) -> int:
    redis = connect_settings(settings)
    try:
        return await Scheduler(redis, settings).secrets.rotate()
    finally:
        await redis.aclose()
