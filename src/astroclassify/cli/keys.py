"""``keys``: API keys for the REST API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from astroclassify.cli.app import app
from astroclassify.cli.console import err, installation, out

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys for the REST API.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key's holder.")],
    peer: Annotated[bool, typer.Option("--peer", help="For another installation: reads shared labels only.")] = False,
    share: Annotated[
        bool, typer.Option("--share", help="Share the corrections this key's holder makes with peers.")
    ] = False,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from astroclassify.store.api_keys import create_api_key

    with installation().open_store() as store:
        record, key = create_api_key(store, name, scope="peer" if peer else "client", share=share)
    print(key)
    what = "a peer key (shared labels only)" if peer else "sharing its corrections" if share else "corrections private"
    err.print(f"key {record.name!r} created, {what}; store it now, it cannot be shown again")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (names and prefixes, never the keys)."""
    from astroclassify.store.api_keys import list_api_keys

    with installation().open_store() as store:
        keys = list_api_keys(store)
    t = Table("name", "prefix", "scope", "shares", "created", "revoked", box=None)
    for k in keys:
        revoked = str(k.revoked_at)[:19] if k.revoked_at else ""
        t.add_row(k.name, f"ac_{k.prefix}_…", k.scope, "yes" if k.share else "", str(k.created_at)[:19], revoked)
    out.print(t)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from astroclassify.store.api_keys import revoke_api_key

    with installation().open_store() as store:
        revoke_api_key(store, name)
    out.print(f"key {name!r} revoked")
