"""Where the real iRedMail/iRedAPD schemas are: ../shared/iredmail beside the repository."""

from __future__ import annotations

from pathlib import Path

SHARED_SCHEMAS = Path(__file__).resolve().parents[2] / ".." / "shared" / "iredmail"


def shared_schema() -> Path | None:
    """The folder with iredmail/amavisd/iredapd .mysql/.pgsql files, or None when absent."""
    path = SHARED_SCHEMAS.resolve()
    return path if (path / "iredapd.mysql").is_file() else None
