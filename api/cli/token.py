"""leasehold token: make an admin token, and manage API and registration tokens in Redis."""

from __future__ import annotations

import argparse
import asyncio
import sys

from leasehold.scheduler import errors
from leasehold.scheduler.auth import TokenStore, digest, new_secret
from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect_settings
from leasehold.scheduler.core import Scheduler


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               formatter: type[argparse.HelpFormatter]) -> None:
    text = "make an admin token; create or delete API and registration tokens"
    token = commands.add_parser("token", help=text, description=text, formatter_class=formatter)
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=text, description=text, formatter_class=formatter)

    action("generate", "print a new admin token for LEASEHOLD_ADMIN_TOKEN")
    create = action("create", "create an API token (needs LEASEHOLD_REDIS_URL)")
    create.add_argument("--role", required=True,
                        help="what it may do: admin, submitter, viewer or metrics")
    create.add_argument("--name", required=True, help="who or what uses it")
    delete = action("delete", "delete an API token by id")
    delete.add_argument("id", help="the id printed by create")
    registration = action("registration", "create a one-time registration token for agents")
    registration.add_argument("--ttl", type=float, default=3600, help="seconds (<= 86400)")
    registration.add_argument("--uses", type=int, default=1, help="workers it may register")
    token.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "generate":
        secret = new_secret("lha_")
        print(secret)
        print(f"# sha256 {digest(secret)} (only the digest is ever kept)", file=sys.stderr)
        return 0
    settings = Settings()
    if settings.redis_url is None:
        print("leasehold token: set LEASEHOLD_REDIS_URL (and LEASEHOLD_NAMESPACE if not lh)",
              file=sys.stderr)
        return 2
    try:
        print(asyncio.run(_manage(settings, args)))
    except errors.SchedulerError as exc:
        print(f"leasehold token: {exc.message}", file=sys.stderr)
        return 1
    return 0


async def _manage(settings: Settings, args: argparse.Namespace) -> str:
    redis = connect_settings(settings)
    try:
        scheduler = Scheduler(redis, settings)
        await scheduler.start()
        store = TokenStore(redis, scheduler.scripts, scheduler.keys, [])
        if args.action == "create":
            token_id, token = await store.create_api_token(args.role, args.name)
            return f"id {token_id}\ntoken {token}"
        if args.action == "delete":
            await store.delete_api_token(args.id)
            return f"deleted {args.id}"
        token_id, token, expires = await store.create_registration_token(args.ttl, args.uses)
        return f"id {token_id}\ntoken {token}\nexpires_at_ms {expires}"
    finally:
        await redis.aclose()
