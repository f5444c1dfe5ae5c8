"""``lambdad keys``: the access keys SigV4 mode accepts, kept in the data directory.

These work on the key file itself (``lambdad.store.access_keys``), not through the API: they
are how the first key of a server comes to be, and a running server sees each change by its
next request.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lambdad.config import load_settings
from lambdad.store.access_keys import AccessKeyError, KeyFile


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage the access keys of SigV4 mode")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; prints it as JSON")
    create.add_argument("--account-id", required=True, help="the key's account (12 digits)")
    create.add_argument("--name", required=True, help="the IAM user name the key belongs to")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="every key, without its secret")
    listing.set_defaults(run=run_list)
    delete = actions.add_parser("delete", help="remove a key")
    delete.add_argument("key_id", metavar="KEY_ID", help="the AccessKeyId to remove")
    delete.set_defaults(run=run_delete)
    for parser in (create, listing, delete):
        parser.add_argument("--data-dir", type=Path, help="the server's data directory")
        parser.add_argument("--config", type=Path, help="a TOML settings file")


def _key_file(args: argparse.Namespace) -> KeyFile:
    settings = load_settings({"data_dir": args.data_dir}, config_file=args.config)
    return KeyFile(settings.data_dir)


def _guarded(args: argparse.Namespace, action: Any) -> int:
    try:
        result = action(_key_file(args))
    except (AccessKeyError, ValueError, OSError) as exc:
        print(f"lambdad: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0


def run_create(args: argparse.Namespace) -> int:
    def create(keys: KeyFile) -> dict[str, str]:
        key = keys.create(args.account_id, args.name)
        return {
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": key.secret_access_key,
            "AccountId": key.account_id,
        }

    return _guarded(args, create)


def run_list(args: argparse.Namespace) -> int:
    def listing(keys: KeyFile) -> dict[str, Any]:
        return {
            "AccessKeys": [
                {
                    "AccessKeyId": k.access_key_id,
                    "AccountId": k.account_id,
                    "UserName": k.user_name,
                    "UserId": k.user_id,
                    "CreateDate": k.created,
                }
                for k in keys.entries()
            ]
        }

    return _guarded(args, listing)


def run_delete(args: argparse.Namespace) -> int:
    return _guarded(args, lambda keys: keys.delete(args.key_id))
