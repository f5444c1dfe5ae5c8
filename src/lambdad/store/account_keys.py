"""Data written before accounts: keys ``(region, ...)`` become ``(account, region, ...)``.

Every metadata key starts with the account that owns the row since accounts came (SigV4 mode,
docs/accounts-and-sigv4.md). A data directory from before keeps working: when lambdad opens it,
each row whose key does not start with an account id (12 digits) is moved under the configured
default account, all in one transaction. Running it again finds nothing to move.
"""

from __future__ import annotations

import re

from lambdad.store.base import Store, Table, Write

_ACCOUNT = re.compile(r"\d{12}")
#: Tables no account owns: keyed by something global (a function URL's url-id, unique across
#: accounts, names the config it belongs to). Metrics and durable executions' operations and
#: events came after accounts: every row has one (and the tables are the largest, so they are
#: not scanned at every start for nothing), nor do provisioned shares. The node registry and
#: the cluster's shared secrets are the cluster's, not an account's.
_GLOBAL_TABLES = frozenset(
    {
        Table.FUNCTION_URL_IDS,
        Table.METRICS,
        Table.DURABLE_OPERATIONS,
        Table.DURABLE_EVENTS,
        Table.NODES,
        Table.PROVISIONED_SHARES,
        Table.CLUSTER_SECRETS,
    }
)


def is_account_key(key: tuple[str, ...]) -> bool:
    return bool(key) and _ACCOUNT.fullmatch(key[0]) is not None


async def move_under_accounts(store: Store, default_account: str) -> int:
    """Move every row keyed without an account under ``default_account``; how many moved."""
    writes: list[Write] = []
    for table in Table:
        if table in _GLOBAL_TABLES:
            continue
        for key, doc in await store.scan(table):
            if not is_account_key(key):
                writes.append(Write(table, (default_account, *key), doc))
                writes.append(Write(table, key, None))
    if writes:
        await store.write(writes)
    return len(writes) // 2
