"""Faults around an upload: a full disk and Ctrl-C, on real SQLite files. Each ends
with a one-line message, its documented exit status and the database as it was.
(Issue 11, points 4 and 10.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.synthetic import write_synthetic
from devtools.servers import python_as
from tests.test_upload import GOOD, GOOD_2, HEADER, ROOT, _cli, _write
from warehouse.config import sqlite_url
from warehouse.db import make_engine
from warehouse.models import Load, Person


@contextmanager
def _tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A small tmpfs: a real file system that fills up (needs root, as in CI)."""
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with _tmpfs(tmp_path / "small_disk", "3m") as mount_point:
        yield mount_point


def _state(url: str) -> tuple[int, list[tuple[str, str]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            people = int(connection.scalar(select(func.count()).select_from(Person.__table__)))
            loads = [tuple(row) for row in connection.execute(select(Load.source_name, Load.status).order_by(Load.id))]
    finally:
        engine.dispose()
    return people, loads  # type: ignore[return-value]


def test_a_full_disk_is_exit_2_and_leaves_the_database_intact(small_disk: Path, tmp_path: Path) -> None:
    """Point 4: 'database or disk is full' came out of the raw cursor as a traceback
    with exit 1; point 10: nothing checked the space an upload needs."""
    url = sqlite_url(small_disk / "census.db")
    first = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n", "first.csv")
    assert _cli(first, "--url", url).returncode == 0
    before = _state(url)
    big = write_synthetic(60_000, tmp_path / "big.csv")
    # Checked before starting: refused at once, naming what it needs.
    done = _cli(big, "--url", url)
    assert done.returncode == 2, done.stderr
    assert "not enough disk space: the upload needs about" in done.stderr
    assert f"free in {small_disk}" in done.stderr and done.stderr.count("\n") == 1
    # Past the check (as when the estimate is wrong): the disk really fills up.
    done = _cli(big, "--skip-space-check", "--url", url)
    assert done.returncode == 2, done.stderr
    assert "database or disk is full" in done.stderr and "nothing was loaded" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert _state(url) == before
    # With room again the same upload works (nothing was left half-done).
    for file in small_disk.glob("census.db*"):  # with its -wal / -shm, if any were left
        shutil.move(file, tmp_path / file.name)
    moved = sqlite_url(tmp_path / "census.db")
    assert _state(moved) == before
    assert _cli(big, "--url", moved).returncode == 0
    assert _state(moved)[0] == before[0] + 60_000


def test_a_disk_too_small_for_the_final_copy_says_so(tmp_path: Path) -> None:
    """Point 10: when the write-ahead log could not be copied into the database file
    after the commit, the upload exited 0 and left the log behind without a word."""
    big = write_synthetic(60_000, tmp_path / "big.csv")
    first = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n", "first.csv")
    # 9 MB: room for the log (about 6 MB here) but not for the file to grow by as much.
    with _tmpfs(tmp_path / "disk", "9m") as disk:
        url = sqlite_url(disk / "census.db")
        assert _cli(first, "--url", url).returncode == 0
        done = _cli(big, "--skip-space-check", "--url", url)
        assert done.returncode == 2, done.stdout
        assert "the upload was committed, but its write-ahead log could not be copied" in done.stderr
        assert "database or disk is full" in done.stderr and done.stderr.count("\n") == 1
        # Committed indeed: the rows are there (read through the log).
        people, loads = _state(url)
    assert people == 60_002 and [status for _, status in loads] == ["loaded", "loaded"]


def test_ctrl_c_is_exit_130_and_rolls_back(tmp_path: Path) -> None:
    """Point 4: Ctrl-C printed a raw KeyboardInterrupt traceback. Three times over:
    a Ctrl-C that landed while pyarrow parsed a block was lost (pyarrow's own
    handler), and the upload committed, in 4 of 10 tries."""
    url = sqlite_url(tmp_path / "census.db")
    first = _write(tmp_path, "\n".join([HEADER, GOOD]) + "\n", "first.csv")
    assert _cli(first, "--url", url).returncode == 0
    before = _state(url)
    big = write_synthetic(400_000, tmp_path / "big.csv")
    for _ in range(3):
        loading = subprocess.Popen(
            [sys.executable, "-m", "loaders.upload", str(big), "--url", url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wal = tmp_path / "census.db-wal"
        deadline = time.monotonic() + 120
        # Interrupt once rows are being written (the write-ahead log grows).
        while loading.poll() is None and time.monotonic() < deadline:
            if wal.exists() and wal.stat().st_size > 4_000_000:
                break
            time.sleep(0.02)
        assert loading.poll() is None, "the upload finished before it could be interrupted"
        loading.send_signal(signal.SIGINT)
        status = loading.wait(timeout=120)
        out, err = loading.communicate()
        assert status == 130, err or out
        assert err == "error: interrupted; nothing was loaded\n"
        assert _state(url) == before


def test_permission_denied_is_exit_2(tmp_path: Path) -> None:
    """Point 4: permission denied (as a non-root user) printed a traceback with exit 1."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("runs the upload as the user nobody, which needs root")
    python = python_as("nobody", "loaders.upload")
    if python is None:
        pytest.skip("no Python interpreter that the user nobody may run imports the project")
    folder = Path(tempfile.mkdtemp(prefix="census-perm-"))  # outside pytest's root-only tmp
    try:
        folder.chmod(0o755)
        readable = _write(folder, "\n".join([HEADER, GOOD]) + "\n", "ok.csv")
        readable.chmod(0o644)
        secret = _write(folder, "\n".join([HEADER, GOOD]) + "\n", "secret.csv")
        secret.chmod(0o600)
        writable = folder / "writable"
        writable.mkdir(mode=0o777)
        writable.chmod(0o777)
        read_only = folder / "read_only"
        read_only.mkdir()
        assert _cli(readable, "--url", sqlite_url(read_only / "census.db")).returncode == 0
        read_only.chmod(0o755)
        for file in read_only.iterdir():
            file.chmod(0o644)
        before = _state(sqlite_url(read_only / "census.db"))

        def as_nobody(source: Path, url: str) -> subprocess.CompletedProcess[str]:
            command = [*python[:-1], "DATABASE_CONNECT_TIMEOUT=60", python[-1], "-m", "loaders.upload"]
            command += [str(source), "--url", url]
            return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

        done = as_nobody(secret, sqlite_url(writable / "census.db"))
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"error: {secret}: Permission denied; nothing was loaded\n"
        started = time.monotonic()
        done = as_nobody(readable, sqlite_url(read_only / "census.db"))
        assert done.returncode == 2, done.stderr
        assert "readonly database" in done.stderr and "Traceback" not in done.stderr
        assert time.monotonic() - started < 30  # at once, not after DATABASE_CONNECT_TIMEOUT
        assert _state(sqlite_url(read_only / "census.db")) == before
    finally:
        shutil.rmtree(folder, ignore_errors=True)
