"""One-time and idempotent set-up: the PostgreSQL cluster, the database, buckets and stream."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import subprocess
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import nats
from botocore.exceptions import ClientError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError
from psycopg import sql

from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings
from workers.stack import pg_auth
from workers.stack.errors import StackError
from workers.stack.layout import POSTGRES_BIN, StackLayout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CORSRuleTypeDef

DATABASE = "conveyor"
# Long enough to absorb a re-delivered store event; Nats-Msg-Id dedups within it.
DUPLICATE_WINDOW_SECONDS = 120.0

T = TypeVar("T")


def _searchable_by(path: Path, user: pwd.struct_passwd) -> bool:
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _let_postgres_reach(layout: StackLayout, user: pwd.struct_passwd) -> None:
    """postgres runs as its own user: it must be able to walk down to its data directory."""
    if not _searchable_by(layout.state, user):
        # Our own directory (mkdtemp makes it 0700): let others pass through, not list it.
        layout.state.chmod(layout.state.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)
    for parent in layout.state.parents:
        if not _searchable_by(parent, user):
            raise StackError(f"user postgres cannot enter {parent} (on the way to {layout.pg})")


def init_postgres_cluster(layout: StackLayout, superuser_password: str) -> None:
    """initdb once, as the postgres user, into STATE/pg/data: password logins from the start."""
    postgres = pwd.getpwnam("postgres")
    _let_postgres_reach(layout, postgres)
    # Only postgres enters: the data, and the socket directory (root needs no permission).
    for path in (layout.pg, layout.pg_data, layout.pg_socket_dir):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, postgres.pw_uid, postgres.pw_gid)
        path.chmod(0o700)
    if (layout.pg_data / "PG_VERSION").exists():
        return
    if any(layout.pg_data.iterdir()):
        raise StackError(f"{layout.pg_data} holds files but no cluster: move them away first")
    # initdb reads the superuser's password from a file postgres can read; gone right after.
    pwfile = layout.pg / "initdb.pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(superuser_password + "\n")
    os.chown(pwfile, postgres.pw_uid, postgres.pw_gid)
    try:
        subprocess.run(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(layout.pg_data),
                "-U",
                pg_auth.SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            user=postgres.pw_uid,
            group=postgres.pw_gid,
            extra_groups=[],
            cwd=layout.pg,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            check=True,
            capture_output=True,
        )
    finally:
        pwfile.unlink()
    pg_auth.write_pg_hba(layout)


def create_database(settings: Settings, layout: StackLayout) -> None:
    """The app's database, owned by the app role (so migrations run as that role).

    A database made before the app role existed belonged to postgres, as did every table the
    migrations made in it: all of it goes to the app role once.
    """
    app = settings.database_user
    with pg_auth.superuser_connect(settings, layout, dbname="postgres") as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if row is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(app)
                )
            )
            return
        if row[0] != app:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(app)
                )
            )
    with pg_auth.superuser_connect(settings, layout, dbname=DATABASE) as conn:
        for kind, name in conn.execute(_NOT_OWNED_BY_APP, {"app": app}).fetchall():
            conn.execute(
                sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(kind), sql.SQL(name), sql.Identifier(app)
                )
            )


# Everything in schema public not owned by the app role, as (ALTER keyword, qualified name).
# Indexes, a table's row type and sequences of identity/serial columns follow their table.
_NOT_OWNED_BY_APP = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
       c.oid::regclass::text
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relowner <> %(app)s::regrole
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
                                       WHERE d.classid = 'pg_class'::regclass
                                         AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text
FROM pg_type t
WHERE t.typnamespace = 'public'::regnamespace
  AND t.typowner <> %(app)s::regrole
  AND t.typtype IN ('e', 'd', 'r', 'm')
UNION ALL
SELECT 'ROUTINE', p.oid::regprocedure::text
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND p.proowner <> %(app)s::regrole
  AND p.prokind IN ('f', 'p')
"""


def create_buckets(settings: Settings) -> None:
    """The three buckets: uploads (private, CORS for browsers), the edge's origin (anonymous
    GetObject on its objects, nothing else) and quarantine (private)."""
    s3 = make_s3_client(settings)
    for bucket in (settings.bucket, settings.public_bucket, settings.quarantine_bucket):
        _ensure_bucket(s3, bucket)
    _ensure_cors(s3, settings)
    _ensure_policy(s3, settings.public_bucket, public_read_policy(settings.public_bucket))
    _ensure_policy(s3, settings.bucket, None)
    _ensure_policy(s3, settings.quarantine_bucket, None)


def public_read_policy(bucket: str) -> dict[str, object]:
    """Anyone may GET an object of `bucket`; nobody anonymous may list it or write to it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EdgeOriginPublicRead",
                "Effect": "Allow",
                "Principal": "*",
                # Scalars, not one-item lists: the form the store answers with, so an unchanged
                # policy compares equal and is not written again.
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ensure_bucket(s3: S3Client, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as exc2:  # created meanwhile by a concurrent `up`
            if _error_code(exc2) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise


def _ensure_policy(s3: S3Client, bucket: str, wanted: dict[str, object] | None) -> None:
    """Set the bucket's policy to `wanted`, or remove any policy when `wanted` is None."""
    try:
        current: object = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if _error_code(exc) not in ("NoSuchBucketPolicy", "404", "NotFound"):
            raise
        current = None
    if current == wanted:
        return
    if wanted is None:
        s3.delete_bucket_policy(Bucket=bucket)
    else:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(wanted))


def _ensure_cors(s3: S3Client, settings: Settings) -> None:
    """A CORS rule on the uploads bucket so browsers can PUT parts, POST a policy form, and
    read the ETag back."""
    rule: CORSRuleTypeDef = {
        "AllowedOrigins": sorted(settings.browser_origins),
        "AllowedMethods": ["GET", "HEAD", "PUT", "POST"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3600,
    }
    try:
        current = s3.get_bucket_cors(Bucket=settings.bucket).get("CORSRules", [])
    except ClientError:
        current = []
    if [_comparable(r) for r in current] != [_comparable(rule)]:
        s3.put_bucket_cors(Bucket=settings.bucket, CORSConfiguration={"CORSRules": [rule]})


def _comparable(rule: object) -> dict[str, object]:
    assert isinstance(rule, dict)
    keys = ("AllowedOrigins", "AllowedMethods", "AllowedHeaders", "ExposeHeaders", "MaxAgeSeconds")
    return {k: sorted(v) if isinstance(v, list) else v for k, v in rule.items() if k in keys}


async def _ensure_stream(settings: Settings) -> None:
    nc = await nats.connect(
        settings.nats_servers, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0
    )
    try:
        js = nc.jetstream()
        wanted = StreamConfig(
            name=settings.events_stream,
            subjects=[settings.events_subject],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )
        try:
            info = await js.stream_info(settings.events_stream)
        except NotFoundError:
            await js.add_stream(wanted)
            return
        have = info.config
        if have.subjects != wanted.subjects or have.duplicate_window != wanted.duplicate_window:
            have.subjects = wanted.subjects
            have.duplicate_window = wanted.duplicate_window
            await js.update_stream(have)
    finally:
        await nc.close()


def create_stream(settings: Settings) -> None:
    """The JetStream stream the adapter publishes store events to and the relay reads."""
    _run_async(lambda: _ensure_stream(settings))


def _run_async(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # Called from inside an event loop (an async test, say): run on a loop of our own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def _ensure_search_attributes(settings: Settings) -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )
    from temporalio.client import Client

    from workflows import search_attributes

    client = await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=settings.temporal_namespace)
    )
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in search_attributes.ALL
        if key.name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=settings.temporal_namespace, search_attributes=missing
            )
        )


def create_search_attributes(settings: Settings) -> None:
    """The custom search attributes the workflows set (idempotent)."""
    _run_async(lambda: _ensure_search_attributes(settings))
