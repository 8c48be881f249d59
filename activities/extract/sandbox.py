"""LibreOffice in a private view of the file system (bubblewrap), when the worker can make one.

LibreOffice draws a picture a document links by path (Word's INCLUDEPICTURE field, in .doc
and RTF alike) into the PDF it makes: a preview of an uploaded document could show any image
the worker can read, another upload's included. In the sandbox it sees the distribution's
programs and fonts read-only, the one document, and its own scratch folder; nothing else of
the machine, no network, no other process.

A worker without bubblewrap, or where namespaces are refused (a container run without the
rights to make them), has no sandbox: `available()` says so, and what needs it is skipped
with a reason instead.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

BWRAP = "bwrap"
# Read-only, when present: what a program of the distribution needs to start and find fonts.
_SYSTEM = ("/usr", "/etc/fonts", "/etc/libreoffice", "/etc/ld.so.cache", "/var/cache/fontconfig")
_SYSTEM_FILES = ("/etc/passwd", "/etc/group")  # getpwuid(); no secrets in either
_MERGED_USR = ("bin", "lib", "lib64", "sbin")
PROBE_TIMEOUT_SECONDS = 10


def sandboxed(
    command: Sequence[str], *, writable: Path, readable: Sequence[Path] = ()
) -> list[str]:
    """`command` run inside the sandbox: `writable` (its scratch folder and working folder)
    read-write, each of `readable` read-only, nothing else of the machine."""
    args = [BWRAP, "--unshare-all", "--die-with-parent", "--new-session"]
    for system in _SYSTEM + _SYSTEM_FILES:
        args += ["--ro-bind-try", system, system]
    for name in _MERGED_USR:
        if Path("/", name).is_symlink():
            args += ["--symlink", f"usr/{name}", f"/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--bind", str(writable), str(writable)]
    for source in readable:
        args += ["--ro-bind", str(source), str(source)]
    # HOME and TMPDIR on the sandbox's own /tmp, gone with it (fontconfig's caches included).
    args += ["--chdir", str(writable), "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
    args += ["--", *command]
    return args


@functools.cache
def available() -> bool:
    """Whether this worker can run a program in the sandbox (checked once per process)."""
    if shutil.which(BWRAP) is None:
        return False
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-sandbox-") as scratch:
            done = subprocess.run(
                sandboxed(["true"], writable=Path(scratch)),
                capture_output=True,
                timeout=PROBE_TIMEOUT_SECONDS,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
