"""The `conveyor` command: local stack, migrations and API keys."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, NoReturn

import typer
from sqlalchemy import select

from conveyor_client.cli import app as client_app
from conveyor_core.db.models import ApiKey, Tenant
from conveyor_core.db.session import make_engine, make_session_factory, transaction
from conveyor_core.keys import display_prefix, generate_api_key, hash_api_key
from conveyor_core.settings import Settings, get_settings
from conveyor_core.types import SweepResult

app = typer.Typer(help="Conveyor: workflow-orchestrated file ingestion.", no_args_is_help=True)
JsonOutput = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class ScanOversize(StrEnum):
    reject = "reject"
    serve_unscanned = "serve_unscanned"


# The client's commands (upload, ls, info, events, get, rm) share the one `conveyor` command.
app.registered_commands += client_app.registered_commands
stack_app = typer.Typer(help="The local stack (every server, under one supervisor).")
keys_app = typer.Typer(help="API keys.")
tenants_app = typer.Typer(help="Tenants: their limits and what they hold.")
app.add_typer(tenants_app, name="tenants")
app.add_typer(stack_app, name="stack")
app.add_typer(keys_app, name="keys")


@stack_app.command("up")
def stack_up() -> None:
    """Install nothing, start everything, return once every part answers its readiness check."""
    from workers.stack import manage

    settings = get_settings()
    try:
        manage.up(settings)
    except manage.StackError as e:
        typer.echo(f"The stack did not come up: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(
        f"Conveyor is up: API {settings.api_url}, Temporal UI "
        f"http://{settings.host}:{settings.temporal_ui_port}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop everything `stack up` started; state is kept."""
    from workers.stack import manage

    manage.down(get_settings())
    typer.echo("Conveyor is down.")


@stack_app.command("restart")
def stack_restart(
    programs: Annotated[
        list[str] | None, typer.Argument(help="Programs; all apps if none.")
    ] = None,
) -> None:
    """Restart programs of a running stack, e.g. the apps after the code changed."""
    from workers.stack import manage

    targets = programs or ["api", "worker", "adapter", "relay"]
    typer.echo(manage.supervisorctl(get_settings(), "restart", *targets).rstrip())


@stack_app.command("status")
def stack_status() -> None:
    """Each program of the local stack and its supervisor state."""
    from workers.stack import manage

    for name, state in sorted(manage.status(get_settings()).items()):
        typer.echo(f"{name:<12} {state}")


@app.command("trace")
def trace_file(
    file_id: Annotated[str, typer.Argument(help="The file whose trace to show.")],
    width: Annotated[int, typer.Option(help="Columns of the waterfall's bars.")] = 40,
) -> None:
    """Print a file's whole trace (API, workflow, every activity) as a waterfall, from the
    local span store (`<state>/traces/`; with an OTLP endpoint set, use your tracing UI)."""
    from observability.span_store import trace_of_file

    spans = trace_of_file(get_settings().state_path / "traces", file_id)
    if not spans:
        typer.echo(f"No spans of file {file_id} (yet).", err=True)
        raise typer.Exit(4)
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    typer.echo(f"trace {spans[0].trace_id}  {total / 1e6:.1f} ms  {len(spans)} spans")
    for span in spans:
        left = int((span.start_ns - start) / total * width)
        bar = "#" * max(1, int((span.end_ns - span.start_ns) / total * width))
        attempt = span.attributes.get("temporalActivityAttempt") or span.attributes.get("attempt")
        notes = f" attempt {attempt}" if attempt else ""
        if span.status == "ERROR":
            notes += f" ERROR {span.error or ''}".rstrip()
        typer.echo(
            f"{(span.start_ns - start) / 1e6:9.1f} ms {span.duration_ms:9.1f} ms "
            f"|{' ' * left}{bar:<{width - left}}| {span.service:<16} {span.name}{notes}"
        )


@app.command("status")
def status(
    as_json: JsonOutput = False,
) -> None:
    """Each component (API, Postgres, Temporal, store, NATS, clamd, edge): up or down, with
    its version. Exits 1 when any is down."""
    import asyncio

    from workers.status import component_statuses

    statuses = asyncio.run(component_statuses(get_settings()))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2))
    else:
        for s in statuses:
            state = "up" if s.up else "DOWN"
            typer.echo(f"{s.name:<13} {state:<5} {s.version or s.detail or ''}")
    if not all(s.up for s in statuses):
        raise typer.Exit(1)


@app.command("sweep")
def sweep(
    grace: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seconds an object or deletion must have been left alone first "
            "(default: CONVEYOR_STRAY_GRACE_SECONDS).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOutput = False,
) -> None:
    """Sweep now, as the schedule does every CONVEYOR_SWEEP_INTERVAL_SECONDS: remove objects
    under incoming/ that no upload waits for, abort their multipart uploads, and start again
    the deletions that did not finish. Exits 5 when Temporal is not reachable."""
    import asyncio

    from temporalio.client import Client
    from temporalio.service import RPCError

    from workers.sweeper import sweep_now

    settings = get_settings()

    async def run() -> SweepResult:
        client = await Client.connect(
            settings.temporal_target, namespace=settings.temporal_namespace
        )
        return await sweep_now(client, settings, grace)

    try:
        result = asyncio.run(run())
    except (RPCError, RuntimeError) as e:
        typer.echo(f"Temporal is not reachable at {settings.temporal_target}: {e}", err=True)
        _leave_temporal_command(5)
    if json_output:
        typer.echo(json.dumps(dataclasses.asdict(result)))
    else:
        typer.echo(
            f"strays removed: {result.strays_removed}, multipart uploads aborted: "
            f"{result.multipart_aborted}, deletions started again: {result.deletions_restarted}"
        )
    _leave_temporal_command(0)


@app.command("reprocess")
def reprocess(
    stage: Annotated[
        str | None,
        typer.Option(
            help="The stage to re-run: any installed stage but the scan (thumbnails, ocr, …).",
            show_default=False,
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="KEY=VALUE",
            help="Which ready blobs (repeatable, all must hold): content_type=image/png, "
            "content_type=image/* (a prefix), tenant=NAME, created_after=2026-01-01, "
            "created_before=2026-02-01T12:00Z.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Blobs at once.")] = 4,
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="Blobs per page.")] = 100,
    pages_per_run: Annotated[
        int, typer.Option(min=1, help="Pages per workflow run before it continues as new.")
    ] = 4,
    batch_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="Names the batch: workflow reprocess-<stage>-<id> (default: UTC time)."
        ),
    ] = None,
    status_of: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="WORKFLOW_ID",
            help="Show a batch's progress instead of starting one.",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="With --status: follow it until it ends.")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start it, print its id and return.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the counters as JSON.")
    ] = False,
) -> None:
    """Re-run one stage over many ready files' blobs (e.g. thumbnails after adding a size to
    CONVEYOR_THUMBNAIL_SIZES), as a durable, throttled workflow; shows its progress until it
    is done. Ctrl-C only stops watching: the batch goes on (see it with --status).

    Exits 0 when every blob was done or skipped, 1 when some failed (or the batch did not
    finish), 2 on a usage error, 4 for an unknown --status id, 5 when Temporal is not
    reachable, 130 when interrupted.
    """
    import asyncio

    from workers import reprocess as batch

    settings = get_settings()
    workflow_id = status_of or ""
    try:
        if (stage is None) == (status_of is None):
            raise batch.UsageError("give either --stage (to start a batch) or --status ID")
        inp = None
        if stage is not None:
            inp = batch.batch_input(
                settings,
                stage,
                batch.parse_where(where or []),
                concurrency=concurrency,
                page_size=page_size,
                pages_per_run=pages_per_run,
            )
            workflow_id = batch.new_workflow_id(stage, batch_id)
        code = asyncio.run(
            batch.command(
                settings,
                workflow_id,
                inp,
                watch=follow or (inp is not None and not detach),
                as_json=json_output,
            )
        )
    except batch.UsageError as e:
        typer.echo(f"Usage error: {e}", err=True)
        code = 2
    except KeyboardInterrupt:
        typer.echo(
            f"Detached: the batch goes on; see it with conveyor reprocess --status {workflow_id}",
            err=True,
        )
        code = 130
    _leave_temporal_command(code)


def _leave_temporal_command(code: int) -> NoReturn:
    """Ends a command that used a Temporal client. Its native threads can abort a
    short-lived process while the interpreter finalizes (temporalio/sdk-python#300): the exit
    code would be lost to a SIGABRT. Everything is written and nothing is left to clean up,
    so leave at once."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def migrate(
    with_store: Annotated[
        bool, typer.Option("--with-store", help="Also create the buckets and the event stream.")
    ] = False,
) -> None:
    """Upgrade the database schema to the newest revision (idempotent). With --with-store,
    also create the buckets (private, public with anonymous read, quarantine) with CORS, the
    JetStream stream and Temporal's search attributes: what a deployment runs first."""
    from conveyor_core.migrations import upgrade_head

    settings = get_settings()
    upgrade_head(settings)
    typer.echo("database schema is current")
    if with_store:
        from workers.stack import provision

        provision.create_buckets(settings)
        provision.create_stream(settings)
        provision.create_search_attributes(settings)
        typer.echo("buckets, event stream and Temporal search attributes are in place")


def create_key(settings: Settings, tenant_name: str) -> str:
    """Creates the tenant if it is new and a key for it; returns the key (shown only once)."""
    key = generate_api_key()
    with transaction(make_session_factory(make_engine(settings))) as session:
        tenant = session.execute(
            select(Tenant).where(Tenant.name == tenant_name)
        ).scalar_one_or_none()
        if tenant is None:
            tenant = Tenant(name=tenant_name)
            session.add(tenant)
            session.flush()
        session.add(
            ApiKey(tenant_id=tenant.id, key_hash=hash_api_key(key), prefix=display_prefix(key))
        )
    return key


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if it does not exist.")],
    json_output: JsonOutput = False,
) -> None:
    """Create an API key; the key itself is the last line of the output (with --json, its
    `key` field)."""
    if not tenant.strip() or len(tenant) > 100:
        raise typer.BadParameter("the tenant name must be 1 to 100 characters")
    key = create_key(get_settings(), tenant.strip())
    if json_output:
        _echo_json({"tenant": tenant.strip(), "prefix": display_prefix(key), "key": key})
        return
    typer.echo(f"API key for tenant {tenant.strip()!r} (store it now; it is not shown again):")
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    json_output: JsonOutput = False,
) -> None:
    """List keys by their prefix (the keys themselves are never stored)."""
    with transaction(make_session_factory(make_engine(get_settings()))) as session:
        query = select(ApiKey, Tenant.name).join(Tenant).order_by(ApiKey.created_at)
        if tenant is not None:
            query = query.where(Tenant.name == tenant)
        rows = session.execute(query).all()
        if json_output:
            _echo_json(
                [
                    {
                        "prefix": key.prefix,
                        "tenant": name,
                        "created_at": key.created_at.isoformat(),
                        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
                    }
                    for key, name in rows
                ]
            )
            return
        for key, name in rows:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            typer.echo(f"{key.prefix:<12} {name:<24} {key.created_at:%Y-%m-%d %H:%M}  {state}")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key itself, or its prefix as `keys list` shows.")],
    json_output: JsonOutput = False,
) -> None:
    """Revoke a key: the API refuses it at once."""
    key = key.strip()
    with transaction(make_session_factory(make_engine(get_settings()))) as session:
        matches = (
            session.execute(
                select(ApiKey).where(
                    (ApiKey.key_hash == hash_api_key(key)) | (ApiKey.prefix == key)
                )
            )
            .scalars()
            .all()
        )
        if len(matches) != 1:
            reason = "no key has" if not matches else f"{len(matches)} keys have"
            typer.echo(f"{reason} this prefix; give the whole key", err=True)
            raise typer.Exit(1 if not matches else 2)
        [found] = matches
        if found.revoked_at is None:
            found.revoked_at = datetime.now(UTC)
    if json_output:
        _echo_json({"prefix": found.prefix, "revoked_at": found.revoked_at.isoformat()})
    else:
        typer.echo(f"revoked {found.prefix}")


@tenants_app.command("limits")
def tenants_limits(
    name: Annotated[str, typer.Argument(help="The tenant.")],
    max_bytes: Annotated[
        int | None, typer.Option(min=0, help="Bytes the tenant's files may hold.")
    ] = None,
    max_files: Annotated[int | None, typer.Option(min=0, help="Files it may hold.")] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help='Requests per key, e.g. "100/second;5000/hour".')
    ] = None,
    scan_oversize: Annotated[
        ScanOversize | None,
        typer.Option(help="Files too large to scan: fail them, or serve them marked unscanned."),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Back to the settings' defaults first.")
    ] = False,
    json_output: JsonOutput = False,
) -> None:
    """Show a tenant's limits and usage; with options, change the limits first (the API
    applies them within CONVEYOR_API_KEY_CACHE_SECONDS)."""
    import limits as rate_limits

    from api.limits import tenant_usage

    if rate_limit is not None:
        try:
            rate_limits.parse_many(rate_limit)
        except ValueError as e:
            raise typer.BadParameter(f"not a rate limit: {rate_limit!r}") from e
    settings = get_settings()
    with transaction(make_session_factory(make_engine(settings))) as session:
        tenant = session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
        if tenant is None:
            typer.echo(f"no tenant {name!r}", err=True)
            raise typer.Exit(1)
        if clear:
            tenant.max_bytes = tenant.max_files = tenant.rate_limit = None
            tenant.scan_oversize = None
        if max_bytes is not None:
            tenant.max_bytes = max_bytes
        if max_files is not None:
            tenant.max_files = max_files
        if rate_limit is not None:
            tenant.rate_limit = rate_limit
        if scan_oversize is not None:
            tenant.scan_oversize = scan_oversize.value
        oversize = tenant.scan_oversize or settings.scan_oversize
        files, held = session.execute(tenant_usage(tenant.id)).one()
        bytes_limit = (
            tenant.max_bytes if tenant.max_bytes is not None else settings.tenant_max_bytes
        )
        files_limit = (
            tenant.max_files if tenant.max_files is not None else settings.tenant_max_files
        )
        rate_limit = tenant.rate_limit or settings.rate_limit
        if json_output:
            _echo_json(
                {
                    "tenant": tenant.name,
                    "files": int(files),
                    "max_files": files_limit,
                    "bytes": int(held),
                    "max_bytes": bytes_limit,
                    "rate_limit": rate_limit,
                    "scan_oversize": oversize,
                }
            )
            return
        typer.echo(f"tenant      {tenant.name}")
        typer.echo(
            f"files       {files} of {files_limit if files_limit is not None else 'no limit'}"
        )
        typer.echo(
            f"bytes       {held} of {bytes_limit if bytes_limit is not None else 'no limit'}"
        )
        typer.echo(f"rate limit  {rate_limit} per key")
        typer.echo(f"too large to scan: {oversize}")


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


if __name__ == "__main__":
    app()
