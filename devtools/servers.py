"""Start a server as a subprocess on a free port, wait until it answers HTTP, stop it.

The one way the tests and the benchmarks run `python -m api`, `panel serve` or
Datasette:

    with ServerProcess([sys.executable, "-m", "api"], port, ready_path="/health", env=env) as api:
        httpx.get(api.base_url + "/api/v1/people")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One server subprocess listening on 127.0.0.1:`port`.

    `start()` returns once GET `ready_path` answers with a status below 400 (redirects
    followed), or raises RuntimeError with the end of the server's output if the
    process exits or `start_timeout_s` passes first. `stop()` terminates it (then
    kills it if it lingers) and keeps its output in `output`. The output goes to
    `log` if given (it stays there afterwards), else to a temporary file removed
    on stop: a pipe nobody reads would block a chatty server.
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        *,
        ready_path: str = "/",
        env: Mapping[str, str] | None = None,
        cwd: Path = PROJECT_ROOT,
        log: Path | None = None,
        start_timeout_s: float = 60.0,
        poll_s: float = 0.05,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.ready_path = ready_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.start_timeout_s = start_timeout_s
        self.poll_s = poll_s
        self._own_log = log is None
        self.log = log if log is not None else Path(tempfile.mkstemp(prefix="census-server-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.output = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not self._answers(timeout_s=max(0.5, min(30.0, deadline - time.monotonic()))):
            if self.process.poll() is not None or time.monotonic() > deadline:
                exited = self.process.poll()
                self.stop()
                why = f"exited with status {exited}" if exited is not None else f"no answer in {self.start_timeout_s} s"
                raise RuntimeError(
                    f"{' '.join(self.command[:4])} on port {self.port} did not start ({why}):\n{self.output[-3000:]}"
                )
            time.sleep(self.poll_s)
        return self

    def _answers(self, timeout_s: float) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + self.ready_path, timeout=timeout_s):
                return True
        except (OSError, urllib.error.URLError):  # refused, reset, timed out, or an HTTP status >= 400
            return False

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log.exists():
            self.output = self.log.read_text(errors="replace")
            if self._own_log:
                self.log.unlink()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        self.stop()


def child_pids(pid: int) -> list[int]:
    """Direct child processes of `pid`, read from /proc (a server's workers, its browser's driver)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def python_as(user: str, probe_module: str) -> list[str] | None:
    """A command prefix that runs a Python as `user` importing this repository, or None.

    None when `user` cannot reach the checkout: a clone inside a 0700 directory (a bare
    `mktemp -d`, pytest's tmp) is unreadable to anyone but its owner, so tests that must run
    as another user skip there instead of failing on an import error.
    """
    root = Path(__file__).resolve().parent.parent
    site = sysconfig.get_paths()["purelib"]
    env = [f"PYTHONPATH={root}:{site}", "HOME=/tmp", "PATH=/usr/bin:/bin"]
    for python in (sys.executable, "/usr/bin/python3"):
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", "env", "-i", *env, python]
        probe = subprocess.run([*command, "-c", f"import {probe_module}"], capture_output=True, cwd="/tmp")
        if probe.returncode == 0:
            return command
    return None


def server_tracebacks(output: str) -> list[str]:
    """The tracebacks a `panel serve` log holds, less tornado's closed-stream ones
    (a browser closing its page mid-message); anything left is a defect of ours."""
    return [
        chunk
        for chunk in output.split("Traceback")[1:]
        if "StreamClosedError" not in chunk and "WebSocketClosedError" not in chunk
    ]
