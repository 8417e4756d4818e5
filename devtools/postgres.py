"""A real, throwaway PostgreSQL 15 server for the tests and the benchmarks.

PostgreSQL refuses to run as root, so when the tests run as root (as CI does)
the server runs as the unprivileged `nobody` user in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.servers import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresServer:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="census-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.user = "census"
        self._as_root = os.geteuid() == 0
        self.process: subprocess.Popen[bytes] | None = None

    def _run_as(self) -> list[str]:
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if self._as_root else []

    def start(self) -> PostgresServer:
        if not (PG_BIN / "postgres").exists():
            raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}: apt-get install postgresql-15")
        if self._as_root:
            shutil.chown(self.directory, "nobody", "nogroup")
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        subprocess.run(
            [
                *self._run_as(),
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        self.process = subprocess.Popen(
            [
                *self._run_as(),
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.directory),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "server.log", "wb"),  # noqa: SIM115 - the server keeps it
            env=env,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return
            if self.process and self.process.poll() is not None:
                break
            time.sleep(0.1)
        log = (self.directory / "server.log").read_text(errors="replace")
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')  # test-only name from the fixture, not input
        connection.close()
        return self.url(name)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
