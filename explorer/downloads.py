"""Finished exports, served from disk by the explorer's own server.

`panel serve ... --plugins explorer.downloads` (what `python -m explorer` runs)
adds the route `/exports/<token>`: it streams the one file in that token's folder
in 256 KiB chunks (memory bounded whatever the file's size) and deletes the
folder once the file is sent. A folder is also removed when the session that
made it ends, when the same session exports again, and, if the server died,
at the next start once it is a day old.

The folders live under EXPLORER_EXPORT_DIR (one directory shared by the worker
processes of `--num-procs`, since the download request may reach another process
than the session's). The token is 32 random bytes: knowing it is the permission.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Final
from urllib.parse import quote

from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler

from warehouse.config import get_settings

log = logging.getLogger(__name__)

ROUTE_PREFIX: Final = "exports"
CHUNK_BYTES: Final = 256 * 1024
STALE_AFTER_S: Final = 24 * 3600
TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
PLUGIN: Final = __name__


def export_root() -> Path:
    root = get_settings().explorer_export_dir
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def new_slot() -> tuple[str, Path]:
    """A fresh, unguessable folder for one export file: (token, folder)."""
    token = secrets.token_urlsafe(32)
    folder = export_root() / token
    folder.mkdir(mode=0o700)
    return token, folder


def remove_slot(token: str) -> None:
    if TOKEN.match(token):
        shutil.rmtree(export_root() / token, ignore_errors=True)


def slot_file(token: str) -> Path | None:
    """The finished file of a slot (None when absent or still being written)."""
    if not TOKEN.match(token):
        return None
    folder = export_root() / token
    try:
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".part")]
    except OSError:
        return None
    return files[0] if len(files) == 1 else None


def sweep(max_age_s: float = STALE_AFTER_S) -> int:
    """Remove slots older than `max_age_s` (left by a server that was killed)."""
    removed, cutoff = 0, time.time() - max_age_s
    for folder in export_root().iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def _named_as_plugin(argv: list[str]) -> bool:
    for index, arg in enumerate(argv):
        if arg == "--plugins" and index + 1 < len(argv) and argv[index + 1] == PLUGIN:
            return True
        if arg == f"--plugins={PLUGIN}":
            return True
    return False


# `panel serve` imports its plugins at start-up, while sys.argv is still its own
# command line (Bokeh replaces sys.argv while an app script runs): read it now.
_PLUGIN_LOADED: Final = _named_as_plugin(sys.argv)


def served_by_plugin() -> bool:
    """Whether this server process registered the download route."""
    return _PLUGIN_LOADED


def download_url(token: str) -> str:
    """Relative to the app page (/app), so it also works behind a path prefix."""
    return f"{ROUTE_PREFIX}/{token}"


class ExportDownloadHandler(RequestHandler):
    """GET /exports/<token>: the file as an attachment, streamed, then deleted."""

    async def get(self, token: str) -> None:
        path = slot_file(token)
        if path is None:
            raise HTTPError(404, reason="This export is not available (already downloaded, cancelled or expired)")
        size = path.stat().st_size
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.set_header("Content-Type", kind)
        self.set_header("Content-Length", str(size))
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(path.name)}")
        self.set_header("Cache-Control", "no-store")
        sent = 0
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    self.write(chunk)
                    await self.flush()  # waits until the chunk left: at most one chunk in memory
                    sent += len(chunk)
        except StreamClosedError:
            log.info("export download %s interrupted after %d of %d bytes", token[:6], sent, size)
            return  # keep the file: the analyst can click the link again
        remove_slot(token)


ROUTES = [(rf"/{ROUTE_PREFIX}/([A-Za-z0-9_-]+)", ExportDownloadHandler)]

if _PLUGIN_LOADED:  # at server start, before any worker process forks
    sweep()
