"""The local ClamAV signature database (freshclam cannot reach its mirrors offline).

An `.ndb` body signature matches the EICAR test string anywhere in a file, inside archives too.
The string is kept hex-encoded so that no copy of it sits in the repository for scanners to
flag; `eicar()` gives tests the bytes.
"""

from __future__ import annotations

from pathlib import Path

from workers.stack.layout import write_file

EICAR_HEX = (
    "58354f2150254041505b345c505a58353428505e2937434329377d24"
    "45494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a"
)
EICAR_SIGNATURE_NAME = "Conveyor.Test.EICAR"
DATABASE_FILE = "conveyor-test.ndb"


def eicar() -> bytes:
    """The EICAR anti-virus test file, for tests that need a detection."""
    return bytes.fromhex(EICAR_HEX)


def write_database(db_dir: Path) -> None:
    # Format: name:target type (0 = any file):offset (* = anywhere):hex body
    write_file(db_dir / DATABASE_FILE, f"{EICAR_SIGNATURE_NAME}:0:*:{EICAR_HEX}\n")
