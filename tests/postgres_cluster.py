"""A throwaway PostgreSQL cluster for the tests: started from Debian's binaries, on loopback.

One cluster per test worker (made when a test first asks for it, stopped at the end);
every test gets a database of its own, so two tests' repositories never meet even when
their first commits are the same. As root (CI), the server runs as the `postgres` user,
since PostgreSQL refuses to run as root. Connections use a password (scram-sha-256) over
TCP on 127.0.0.1, as a team's database would be reached, so a wrong password is a real
refusal.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "loom"


@dataclass
class Cluster:
    port: int
    password: str
    data: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        return f"postgresql://{USER}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def start_again(self) -> None:
        """Start the stopped server again on the same port and data."""
        self.process = _postmaster(self.data, self.port)
        _wait_ready(self)


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postmaster(data: Path, port: int) -> subprocess.Popen[bytes]:
    bindir = _bindir()
    assert bindir is not None
    return subprocess.Popen(
        [*_as_server_user(), str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
         "-k", str(data), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=120", "-c", "shared_buffers=32MB"],
        stdout=subprocess.DEVNULL, stderr=open(data.parent / "server.log", "ab"),  # noqa: SIM115
    )


def _wait_ready(cluster: Cluster) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(cluster.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline or cluster.process.poll() is not None:
                log = (cluster.data.parent / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the test PostgreSQL did not start:\n{log}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A running cluster for this test worker (skipped where PostgreSQL is not installed)."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it from Debian's packages)")
    home = Path(tempfile.mkdtemp(prefix="loomtui-pg-"))
    data = home / "data"
    password = secrets.token_hex(12)
    (home / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        shutil.chown(home / "pw", "postgres")
    subprocess.run(
        [*_as_server_user(), str(bindir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(home / "pw"),
         "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )
    port = _free_port()
    cluster = Cluster(port, password, data, _postmaster(data, port))
    try:
        _wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """The URL of a new, empty database of its own for one test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres_cluster.admin(f"CREATE DATABASE {name}")
    return postgres_cluster.url(name)
