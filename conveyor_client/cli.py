"""The client half of the `conveyor` command: upload, ls, info, events, get, rm.

Exit codes scripts can rely on: 0 ok; 1 an uploaded file ended not ready (with --wait);
2 usage; 3 authentication; 4 not found; 5 any other API or transport error; 130 paused.

Every command takes `--api-url` and `--api-key` itself (so the commands work when mounted
into another Typer app); run standalone, they may also be given before the command.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ByteSize, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from conveyor_client._batch import FinishedUploads
from conveyor_client._checksums import PartChecksum
from conveyor_client._client import Client
from conveyor_client._exceptions import (
    AuthenticationError,
    ConveyorError,
    NotFoundError,
    UploadPaused,
)
from conveyor_client._models import File
from conveyor_client._state import default_state_dir
from conveyor_client._throttle import Throttle

DEFAULT_API_URL = "http://127.0.0.1:8000"
EXIT_NOT_READY, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_ERROR, EXIT_PAUSED = 1, 2, 3, 4, 5, 130
STDIN = Path("-")

app = typer.Typer(
    help="Conveyor client: upload, list, inspect, download and delete files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="CONVEYOR_API_URL",
        help=f"The API's base URL (default {DEFAULT_API_URL}).",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CONVEYOR_API_KEY", help="API key.", show_default=False),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

_BYTE_SIZE = TypeAdapter(ByteSize)


def _rate(value: str | None) -> float | None:
    """A --limit-rate value (10M, 512KiB, 1000000) in bytes per second."""
    if value is None:
        return None
    try:
        rate = int(_BYTE_SIZE.validate_python(value))
    except PydanticValidationError:
        rate = 0
    if rate <= 0:
        raise typer.BadParameter(f"{value!r} is not a rate such as 10M, 512KiB or 1000000.")
    return rate


LimitRate = Annotated[
    float | None,
    typer.Option(
        "--limit-rate",
        metavar="RATE",
        parser=_rate,
        help="At most this many bytes per second, in all (10M = 10 MB/s, 10MiB = 10 MiB/s).",
        show_default=False,
    ),
]

# Piped output is not cut to 80 columns: ids must survive whole for scripts.
# File names and messages are shown as they are: no markup, no highlighting.
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


@app.callback()
def _global_options(ctx: typer.Context, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    ctx.obj = {"api_url": api_url, "api_key": api_key}


def _connection(ctx: typer.Context, api_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The API URL and key: the command's own option, else the global one, else the
    environment."""
    given = (ctx.obj if isinstance(ctx.obj, dict) else None) or {}

    def pick(name: str, value: str | None) -> str | None:
        source = ctx.get_parameter_source(name)
        explicit = source is not None and source.name == "COMMANDLINE"
        return value if explicit or not given.get(name) else given[name]

    url = pick("api_url", api_url) or DEFAULT_API_URL
    key = pick("api_key", api_key)
    if not key:
        err.print("No API key: pass --api-key or set CONVEYOR_API_KEY.")
        raise typer.Exit(EXIT_AUTH)
    return url, key


def _client(ctx: typer.Context, api_url: str | None, api_key: str | None) -> Client:
    return Client(*_connection(ctx, api_url, api_key))


RESUME_HINT = "Run the same command again to resume."


def _outcome(error: BaseException) -> tuple[int, str] | None:
    """The exit code and the one line on stderr for an error the client raises; None for
    one it does not (a bug, to show whole)."""
    if isinstance(error, UploadPaused):
        done, total = error.progress.bytes_done, error.progress.bytes_total
        if not error.resumable:
            return (
                EXIT_PAUSED,
                f"Stopped ({done} of {total} bytes sent) and cancelled: it cannot resume.",
            )
        return EXIT_PAUSED, f"Paused ({done} of {total} bytes sent)."
    if isinstance(error, KeyboardInterrupt):
        # Between two steps of an upload: whatever the store already holds is kept.
        return EXIT_PAUSED, "Interrupted."
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH, f"Authentication failed: {error.message}"
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND, f"Not found: {error.message}"
    if isinstance(error, ConveyorError | OSError):
        return EXIT_ERROR, f"Error: {error}"
    return None


@contextlib.contextmanager
def _exit_codes() -> Iterator[None]:
    """Maps the client's errors to the documented exit codes, with a line on stderr."""
    try:
        yield
    except (KeyboardInterrupt, ConveyorError, OSError) as e:
        code, line = _outcome(e) or (EXIT_ERROR, str(e))
        err.print(line)
        if code == EXIT_PAUSED:
            err.print(RESUME_HINT)
        raise typer.Exit(code) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
    )


@app.command("upload")
def upload(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files to upload; - reads one file from standard input.",
            show_default=False,
        ),
    ],
    public: Annotated[bool, typer.Option("--public", help="Serve through the CDN.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for each file to finish processing.")
    ] = False,
    json_output: JsonOutput = False,
    jobs: Annotated[int, typer.Option(min=1, max=16, help="Files sent at once.")] = 4,
    concurrency: Annotated[
        int, typer.Option(min=1, max=32, help="Parts of one file sent at once.")
    ] = 4,
    sha256: Annotated[
        bool,
        typer.Option(
            "--sha256",
            help="Sign a large file's parts with SHA-256, hashing the file first so a "
            "duplicate is never sent (default: CRC64NVME, 17 times cheaper; duplicates are "
            "then found once the bytes land).",
        ),
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="The file name to declare, for a single file (standard input's is stdin).",
            show_default=False,
        ),
    ] = None,
    limit_rate: LimitRate = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Upload files, several at once (resumable: after Ctrl-C, run the same command again;
    the files it already sent are not sent again). A file that fails does not stop the
    others; the exit code tells the worst outcome.

    Standard input (-) is copied to a temporary file first, to learn its size; it is uploaded
    on its own and cannot be resumed."""
    for path in paths:
        if path != STDIN and not (path.is_file() and os.access(path, os.R_OK)):
            problem = "is not a readable file" if path.exists() else "does not exist"
            raise typer.BadParameter(f"file {str(path)!r} {problem}.", param_hint="'paths'")
    if STDIN in paths and len(paths) > 1:
        raise typer.BadParameter("standard input (-) is uploaded on its own.", param_hint="'paths'")
    if name is not None and len(paths) > 1:
        raise typer.BadParameter("it names a single file.", param_hint="--name")
    url, key = _connection(ctx, api_url, api_key)
    if STDIN in paths and sys.stdin.isatty():
        err.print("Reading the file from the terminal; end it with Ctrl-D.")
    labels = [name or ("stdin" if path == STDIN else path.name) for path in paths]
    sizes = [None if path == STDIN else path.stat().st_size for path in paths]
    batch = _UploadBatch(
        labels, sizes, err.is_terminal and not json_output, limited=limit_rate is not None
    )
    options = {"public": public, "sha256": sha256, "name": name}
    files = [path for path in paths if path != STDIN]
    finished = FinishedUploads(default_state_dir(), files, url, key, options)
    clients: list[Client] = []
    own = threading.local()  # a client (its connection pools) for each sending thread
    throttle = Throttle(limit_rate) if limit_rate else None  # one limit for every file

    def send(index: int) -> File | None:
        if batch.stop.is_set():
            return None
        if not hasattr(own, "client"):
            own.client = Client(url, key, part_concurrency=concurrency, bandwidth_limit=throttle)
            clients.append(own.client)
        client: Client = own.client
        path, progress = paths[index], batch.reporter(index)
        visibility = "public" if public else "private"
        part_checksum: PartChecksum = "sha256" if sha256 else "crc64nvme"
        if path == STDIN:
            return client.upload(
                sys.stdin.buffer,
                filename=labels[index],
                visibility=visibility,
                progress=progress,
                stop=batch.stop,
                part_checksum=part_checksum,
            )
        if (earlier := finished.file_id(path)) is not None:
            try:  # this command's earlier run sent it
                file: File = client.get_file(earlier)
                progress(file.size, file.size)
                return file
            except NotFoundError:
                finished.forget(path)  # deleted since: send it again
        file = client.upload(
            path,
            filename=name,
            visibility=visibility,
            progress=progress,
            stop=batch.stop,
            part_checksum=part_checksum,
        )
        finished.record(path, file.id)
        return file

    try:
        with batch.bars:
            outcomes = batch.run(send, jobs)
    finally:
        for client in clients:
            client.close()
    if all(isinstance(outcome, File) for outcome in outcomes):
        finished.clear()
    results = [outcome for outcome in outcomes if isinstance(outcome, File)]
    if wait and results:
        with _exit_codes(), Client(url, key) as client:
            try:
                results = [client.wait_until_ready(f.id) for f in results]
            except KeyboardInterrupt:
                _show_files(results, json_output)
                err.print("Stopped waiting: the files are uploaded and go on processing.")
                raise typer.Exit(EXIT_PAUSED) from None
    _show_files(results, json_output)
    _exit_for(outcomes, paths)
    if wait and any(not f.is_ready for f in results):
        raise typer.Exit(EXIT_NOT_READY)


def _show_files(files: list[File], json_output: bool) -> None:
    if json_output:
        _echo_json([f.raw for f in files])
    else:
        for f in files:
            out.print(f"{f.id}  {f.status:<11}  {f.filename}")


class _UploadBatch:
    """Files sent by a pool of threads, a progress bar each and a total; Ctrl-C sets `stop`,
    which pauses every upload after its in-flight parts and starts no other."""

    def __init__(
        self, labels: list[str], sizes: list[int | None], show: bool, *, limited: bool = False
    ) -> None:
        """`sizes` holds None for a file whose size is known once its upload starts;
        `limited` says a bandwidth limit applies, under which a pause drops the parts in
        flight rather than finishing them."""
        self.stop = threading.Event()
        self._limited = limited
        self.bars = _progress(show)
        self._done = [0] * len(labels)
        self._lock = threading.Lock()
        self._total = (
            self.bars.add_task("total", total=sum(s or 0 for s in sizes))
            if len(labels) > 1
            else None
        )
        self._tasks = [
            self.bars.add_task(label, total=size, visible=False)
            for label, size in zip(labels, sizes, strict=True)
        ]

    def reporter(self, index: int) -> Any:
        self.bars.update(self._tasks[index], visible=True)

        def report(done: int, size: int) -> None:
            with self._lock:
                self._done[index] = done
                self.bars.update(self._tasks[index], completed=done, total=size)
                if self._total is not None:
                    self.bars.update(self._total, completed=sum(self._done))

        return report

    def run(self, send: Any, jobs: int) -> list[File | BaseException | None]:
        """Each file's outcome, in order: its File, the error that ended it, or None when it
        was never started."""
        with concurrent.futures.ThreadPoolExecutor(min(jobs, len(self._tasks))) as pool:
            futures = [pool.submit(send, index) for index in range(len(self._tasks))]
            try:
                _wait_for(futures)
            except KeyboardInterrupt:
                self.stop.set()
                err.print(
                    "Pausing; the parts in flight go again on resume."
                    if self._limited
                    else "Pausing after the parts in flight (Ctrl-C again to quit at once)."
                )
                try:
                    _wait_for(futures)
                except KeyboardInterrupt:
                    # What the store holds is asked again on resume: nothing is lost.
                    self.bars.stop()
                    err.print(f"Stopped. {RESUME_HINT}")
                    os._exit(EXIT_PAUSED)
        return [f.exception() or f.result() for f in futures]


def _wait_for(futures: list[concurrent.futures.Future[Any]]) -> None:
    """Waits in short steps: Ctrl-C may reach another thread, and the main thread sees it
    only when it wakes."""
    pending = set(futures)
    while pending:
        _, pending = concurrent.futures.wait(pending, timeout=0.1)


def _exit_for(outcomes: list[File | BaseException | None], paths: list[Path]) -> None:
    """A line on stderr for each file that did not go, then the exit code of the worst
    outcome (paused before errors: the same command goes on)."""
    codes, resumable = [], False
    for outcome, path in zip(outcomes, paths, strict=True):
        label = "standard input" if path == STDIN else path
        if isinstance(outcome, BaseException):
            described = _outcome(outcome)
            if described is None:
                raise outcome
            codes.append(described[0])
            resumable |= isinstance(outcome, UploadPaused | KeyboardInterrupt) and path != STDIN
            err.print(f"{label}: {described[1]}")
        elif outcome is None:
            codes.append(EXIT_PAUSED)
            resumable = True
            err.print(f"{label}: not started.")
    if EXIT_PAUSED in codes:
        if resumable:
            err.print(RESUME_HINT)
        raise typer.Exit(EXIT_PAUSED)
    if codes:
        raise typer.Exit(max(codes))


@app.command("ls")
def ls(
    ctx: typer.Context,
    query: Annotated[str | None, typer.Argument(help="Full-text search.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    content_type: Annotated[
        str | None, typer.Option("--type", help="Only this type, or a family like image/*.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many files.")] = 50,
    json_output: JsonOutput = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List or search the files, newest first."""
    with _exit_codes(), _client(ctx, api_url, api_key) as client:
        found = client.search(
            query, status=status, content_type=content_type, limit=min(limit, 100)
        )
        files = list(itertools.islice(found, limit))
    if json_output:
        _echo_json([f.raw for f in files])
        return
    table = Table("id", "status", "size", "type", "name", "created", box=None)
    table.columns[0].no_wrap = True
    for f in files:
        created = f.created_at.strftime("%Y-%m-%d %H:%M") if f.created_at else ""
        table.add_row(f.id, f.status, _size(f.size), f.content_type, f.filename, created)
    out.print(table)


@app.command("token")
def token(
    ctx: typer.Context,
    expires_in: Annotated[
        int, typer.Option("--ttl", help="Seconds the token lasts.", min=10)
    ] = 3600,
    max_file_size: Annotated[
        str | None, typer.Option(help="Largest file it may upload (e.g. 100M, 2GiB).")
    ] = None,
    max_files: Annotated[int | None, typer.Option(help="How many files it may create.")] = None,
    content_types: Annotated[
        list[str] | None, typer.Option("--type", help="A type it may upload (image/*); repeat.")
    ] = None,
    ui: Annotated[bool, typer.Option("--ui", help="Print the upload page's address.")] = False,
    json_output: JsonOutput = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Mint an upload token for a browser (it never sees the API key); with --ui, print
    the address of Conveyor's upload page holding it."""
    try:
        size = _BYTE_SIZE.validate_python(max_file_size) if max_file_size else None
    except PydanticValidationError as e:
        raise typer.BadParameter(f"{max_file_size!r} is not a size like 100M or 2GiB") from e
    base, _ = _connection(ctx, api_url, api_key)
    with _exit_codes(), _client(ctx, api_url, api_key) as client:
        minted = client.create_upload_token(
            expires_in=expires_in,
            max_file_size=size,
            max_files=max_files,
            content_types=content_types or None,
        )
    if json_output:
        _echo_json({"id": minted.id, "token": minted.token, "expires_at": str(minted.expires_at)})
    elif ui:
        # In the fragment: a browser never sends it to a server.
        typer.echo(f"{base.rstrip('/')}/ui#token={minted.token}")
    else:
        typer.echo(minted.token)


@app.command("info")
def info(
    ctx: typer.Context,
    file_id: Annotated[str, typer.Argument(metavar="ID", help="The file id.")],
    json_output: JsonOutput = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show a file's metadata, status and processing stages."""
    with _exit_codes(), _client(ctx, api_url, api_key) as client:
        f = client.get_file(file_id)
    if json_output:
        _echo_json(f.raw)
        return
    rows = [
        ("id", f.id),
        ("name", f.filename),
        ("size", f"{f.size} ({_size(f.size)})"),
        ("type", f.content_type),
        ("sha256", f.sha256 or ""),
        ("visibility", f.visibility),
        ("status", f.status + (f" ({f.status_detail})" if f.status_detail else "")),
        ("created", f.created_at.isoformat() if f.created_at else ""),
        ("ready", f.ready_at.isoformat() if f.ready_at else ""),
    ]
    if f.cdn_url:
        rows.append(("cdn url", f.cdn_url))
    for name, stage in f.stages.items():
        took = f", {stage.duration_ms} ms" if stage.duration_ms is not None else ""
        rows.append((f"stage {name}", f"{stage.status}{took}" + _detail(stage.detail)))
    for thumb in f.thumbnails:
        rows.append((f"thumbnail {thumb.size}", f"{thumb.width}x{thumb.height}"))
    table = Table(show_header=False, box=None)
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _detail(detail: str | None) -> str:
    return f": {detail}" if detail else ""


@app.command("events")
def events(
    ctx: typer.Context,
    file_id: Annotated[str, typer.Argument(metavar="ID", help="The file id.")],
    after: Annotated[int, typer.Option(help="Start after this event number.", min=0)] = 0,
    json_output: JsonOutput = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Follow a file's progress as it happens, until its terminal status (exit 0 if ready,
    1 otherwise). Events already past are shown first."""
    last = None
    with _exit_codes(), _client(ctx, api_url, api_key) as client:
        for event in client.events(file_id, after=after):
            last = event
            if json_output:  # one object a line, as they come
                typer.echo(
                    json.dumps(
                        {
                            "seq": event.seq,
                            "type": event.type,
                            "stage": event.stage,
                            "status": event.status,
                            "detail": event.detail,
                            "at": event.at.isoformat() if event.at else None,
                        },
                        sort_keys=True,
                    )
                )
                continue
            when = event.at.strftime("%H:%M:%S.%f")[:-3] if event.at else ""
            subject = f"stage {event.stage}" if event.type == "stage" else "file"
            out.print(f"{event.seq:>3} {when} {subject:<16} {event.status}{_detail(event.detail)}")
    if last is not None and last.is_terminal and last.status != "ready":
        raise typer.Exit(EXIT_NOT_READY)


@app.command("get")
def get(
    ctx: typer.Context,
    file_id: Annotated[str, typer.Argument(metavar="ID", help="The file id.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Where to write (default: its name, here)."),
    ] = None,
    json_output: JsonOutput = False,
    limit_rate: LimitRate = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Download a ready file and check its SHA-256 (resumable: after Ctrl-C or a dropped
    link, run the same command again)."""
    with (
        _exit_codes(),
        Client(*_connection(ctx, api_url, api_key), bandwidth_limit=limit_rate) as client,
        _progress(err.is_terminal and not json_output) as bars,
    ):
        task = bars.add_task(file_id, total=None)

        def report(done: int, size: int) -> None:
            current = client.last_download
            name = current.target.name if current else file_id
            bars.update(task, description=name, completed=done, total=size)

        path = client.download(file_id, output or Path.cwd(), progress=report)
        download = client.last_download
    if json_output:
        _echo_json(
            {
                "id": file_id,
                "path": str(path),
                "size": path.stat().st_size,
                "sha256": download.sha256 if download else None,
                "resumed_from": download.resumed_from if download else 0,
            }
        )
    else:
        err.print(f"Wrote {path}")


@app.command("rm")
def rm(
    ctx: typer.Context,
    file_id: Annotated[str, typer.Argument(metavar="ID", help="The file id.")],
    json_output: JsonOutput = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Delete a file."""
    with _exit_codes(), _client(ctx, api_url, api_key) as client:
        client.delete(file_id)
    if json_output:
        _echo_json({"id": file_id, "deleted": True})
    else:
        err.print(f"Deleted {file_id}")


if __name__ == "__main__":
    app()
