"""Real servers the suite starts on loopback in a temporary directory (PostgreSQL, an S3-compatible
object store), and stops.

Nothing here is mocked: the tests talk to the server the way a deployment would. When the server
cannot be installed on this machine the fixture skips with the reason, loudly (``.ci/run``
installs PostgreSQL in CI; moto's server is in the ``[dev]`` extras).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl (Debian's layout), or None when PostgreSQL is not installed."""
    for folder in sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass(frozen=True)
class Postgres:
    port: int
    database: str
    user: str

    @property
    def url(self) -> str:
        """The URL Dagster's instance takes (``postgresql+psycopg2://``, as the README says)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"


def _as_server_user(command: list[str]) -> list[str]:
    """initdb refuses to run as root: as root, run it as the unprivileged ``postgres`` user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1, trust auth, one database, its data in a temporary folder
    of its own under /tmp (pytest's folders are private to root, and the server runs as ``postgres``)."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="variance-postgres-"))
    data = root / "pgdata"
    socket_dir = root / "socket"
    data.mkdir(parents=True)
    socket_dir.mkdir()
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for path in (data, socket_dir):
            shutil.chown(path, "postgres")
    port = free_port()
    log = root / "postgres.log"
    subprocess.run(
        _as_server_user([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )
    subprocess.run(
        _as_server_user([
            str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
            "-o", f"-p {port} -h 127.0.0.1 -k {socket_dir} -c fsync=off",
        ]),
        check=True, capture_output=True, timeout=120,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            created = subprocess.run(
                _as_server_user([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database]),
                capture_output=True, text=True, timeout=30,
            )
            if created.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if created.returncode != 0:
            raise RuntimeError(f"createdb failed: {created.stderr}")
        yield Postgres(port, database, user)
    finally:
        subprocess.run(
            _as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True, timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server on loopback, and credentials it accepts (made up per session, so a test can
    search every log line, metadata value, file and object for them)."""

    endpoint: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a run reads (the instance metadata service is never asked)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def filesystem(self) -> pafs.S3FileSystem:
        """An admin's view of the server (may create buckets)."""
        host = self.endpoint.removeprefix("http://")
        return pafs.S3FileSystem(
            access_key=self.access_key_id, secret_key=self.secret_access_key, endpoint_override=host,
            scheme="http", region=self.region, allow_bucket_creation=True, allow_bucket_deletion=True,
        )

    def create_bucket(self, name: str) -> str:
        self.filesystem().create_dir(name)
        return name


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """``python -m moto.server`` on 127.0.0.1 and a free port, its log in a temporary folder."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise RuntimeError("moto[server] is not installed (it is in the [dev] extras: make install)")
    root = Path(tempfile.mkdtemp(prefix="variance-s3-"))
    port = free_port()
    log = (root / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto's server exited ({process.returncode}): {(root / 'moto.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not listen on 127.0.0.1:{port} within 60 s") from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}", "AKIA" + secrets.token_hex(8).upper(),
                       "variance-test-secret-" + secrets.token_hex(16))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
