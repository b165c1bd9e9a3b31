"""Where the device token comes from, and reading it again when the server refuses it.

A token given inline (`token`, `SENSORMESH_AGENT_TOKEN`) is fixed for the
life of the process. A token file (`token_file`) is read again by `reload()`,
which the uplink calls before every retry: when a device's token is rotated
(or the device is registered again) the operator writes the new token into
the file and the running agent picks it up, with no restart and nothing lost
from its buffer. A file that is briefly missing or empty (being replaced)
keeps the token already held. The token itself is never logged.

A systemd credential (`/run/credentials/<unit>/...`) is a copy systemd makes
when the service starts: there the new token goes to the credential's source
and the service is restarted (the buffer is kept either way).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEMD_CREDENTIALS = Path("/run/credentials")


class TokenSource:
    """The current device token; `reload()` re-reads a token file."""

    def __init__(self, token: str, path: Path | None = None) -> None:
        self._token = token
        self.path = path
        self._unreadable: str | None = None

    @property
    def token(self) -> str:
        return self._token

    def reload(self) -> bool:
        """Read the token file again (if there is one); True when the token changed."""
        if self.path is None:
            return False
        try:
            token = self.path.read_text().strip()
            problem = None if token else "the file is empty"
        except OSError as error:
            token, problem = "", str(error)
        if problem is not None:
            if problem != self._unreadable:
                log.warning(
                    "event=token_file_unreadable path=%s error=%r keeping=previous_token", self.path, problem
                )
            self._unreadable = problem
            return False
        self._unreadable = None
        if token == self._token:
            return False
        self._token = token
        log.info("event=token_reloaded path=%s", self.path)
        return True

    def how_to_replace(self) -> str:
        """What an operator does to give this agent a new token, for log lines."""
        if self.path is not None and self.path.is_relative_to(SYSTEMD_CREDENTIALS):
            return (
                f"put the device's new token in the file {self.path.name!r} is loaded from (LoadCredential=; "
                "/etc/sensormesh/device-token in the shipped unit) and restart the service; the buffer is kept"
            )
        if self.path is not None:
            return (
                f"write the device's new token to {self.path} (read again on every retry, no restart needed)"
            )
        return "give the agent the device's new token (token or SENSORMESH_AGENT_TOKEN) and restart it"
