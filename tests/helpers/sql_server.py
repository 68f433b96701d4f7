"""What the MariaDB and PostgreSQL test servers share: the schema sets and apd settings for them."""

from __future__ import annotations

from typing import Any

import pytest

PASSWORD = "Secret-pw-1"
USERS = ("vmail", "amavisd", "iredapd")
SCHEMAS = {"iredmail": "", "apd": "apd_"}  # schema set -> database name prefix


class SchemaSets:
    """Mixin: ``backend`` names the apd backend; the server class sets ``port`` and ``schemas``."""

    backend = ""
    port = 0
    schemas: set[str]

    def require_schema(self, schema: str) -> None:
        """Skip (also in CI: this is missing data, not a server failure) without that set."""
        if schema not in self.schemas:
            pytest.skip(f"schema set {schema!r} not loaded: ../shared/iredmail with the iRedMail schemas is absent")

    def db_name(self, schema: str, db: str) -> str:
        return SCHEMAS[schema] + db

    def apd_settings(self, schema: str = "apd", **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {"backend": self.backend}
        for db in USERS:
            values.update(
                {
                    f"{db}_db_server": "127.0.0.1",
                    f"{db}_db_port": self.port,
                    f"{db}_db_name": self.db_name(schema, db),
                    f"{db}_db_user": db,
                    f"{db}_db_password": PASSWORD,
                }
            )
        values.update(overrides)
        return values

    def settings(self, schema: str = "apd", **overrides: Any) -> Any:
        from apd.settings import defaults

        return defaults().replace(**self.apd_settings(schema, **overrides))
