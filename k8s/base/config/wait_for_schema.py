"""Wait until the database schema is at the revision this image expects.

The init container of the ingest, query and control pods runs this script
with the service's own image (it is mounted from a ConfigMap), so a service
never starts against a missing or older schema: on a first install the pods wait for
the migration Job, and in a rolling upgrade the new pods wait for the new
migration while the old ones keep serving. It only reads the revision and
changes nothing. It has no deadline of its own: until the Job has run, the pod
shows `Init:0/1` and logs one line per poll, naming both revisions.
"""

from __future__ import annotations

import logging
import sys
import time

from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from sensormesh_core.config import StorageSettings
from sensormesh_core.logs import configure_logging
from sensormesh_core.storage import migrate

POLL_SECONDS = 3.0

log = logging.getLogger("sensormesh.wait_for_schema")


def expected_head(url: str) -> str:
    """The head revision of the migrations shipped in this image."""
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    if head is None:
        raise RuntimeError("the image carries no migrations")
    return head


def observed_revision(url: str) -> str:
    """The database's revision, `base` before any migration, or why it is unknown."""
    try:
        return migrate.current_revision(url) or "base"
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        return f"unreachable:{type(cause).__name__}"


def main() -> int:
    configure_logging("INFO", "json")
    url = StorageSettings().database_dsn()
    if url is None:
        log.error("event=schema_wait_failed reason=database_url_unset variable=SENSORMESH_DATABASE_URL")
        return 2
    head = expected_head(url)
    while (current := observed_revision(url)) != head:
        log.info("event=waiting_for_schema current=%s expected=%s", current, head)
        time.sleep(POLL_SECONDS)
    log.info("event=schema_ready revision=%s", head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
