"""A real PostgreSQL server for the tests: Debian's binaries, a temporary data directory,
loopback only, run as an unprivileged user (the server refuses to run as root).

:func:`start` makes one cluster with a ``calhub`` role whose password is checked over TCP
(scram-sha-256), so that the tests go through ``[hub] database_password_env`` as a deployment
does. Each test gets a schema of its own (``fresh_url``): a database per test would cost a
``CREATE DATABASE`` each, a schema costs next to nothing.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import trustme

BACKENDS = ["sqlite", "postgresql"]  # the stores every store test runs against
PASSWORD = "calhub-test-password"
PASSWORD_ENV = "CALHUB_TEST_PG_PASSWORD"
_USER = "postgres"  # made by Debian's package; any unprivileged user would do


def binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, None when not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


@dataclass
class Server:
    """A running test cluster."""

    port: int
    datadir: Path
    bindir: Path
    run_as: list[str]
    ca_file: Path  # the CA of the server's TLS certificate (for 127.0.0.1)
    _schemas: Iterator[int] = field(default_factory=itertools.count)

    @property
    def base_url(self) -> str:
        return f"postgresql://calhub@127.0.0.1:{self.port}/calhub"

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.base_url, password=PASSWORD, autocommit=True)

    def fresh_url(self) -> str:
        """A URL whose search_path is a new, empty schema (one per test)."""
        name = f"t{os.getpid()}_{next(self._schemas)}"
        with self.connect() as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.base_url}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        subprocess.run(
            [
                *self.run_as,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "immediate",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificates(root: Path, run_as: list[str]) -> Path:
    """A test CA and the server's certificate for 127.0.0.1 (its key readable by the server's
    user only, as PostgreSQL demands); returns the CA file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "server.key").chmod(0o600)
    if run_as:
        user = pwd.getpwnam(_USER)
        for name in ("server.key", "server.crt"):
            os.chown(root / name, user.pw_uid, user.pw_gid)
    return root / "ca.pem"


def start() -> Server:
    """Start a cluster (raises RuntimeError with the server's log when it cannot)."""
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="calhub-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam(_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", _USER, "--"]
    root.chmod(0o755)  # the temp dir itself is private to its maker
    datadir = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, pwd.getpwnam(_USER).pw_uid, -1)

    def run(*args: str) -> None:
        done = subprocess.run([*run_as, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{log}")

    run(
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "-U",
        "calhub",
        f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256",
        "--auth-local=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    )
    port = _free_port()
    ca_file = _certificates(root, run_as)
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        f" -c ssl=on -c ssl_cert_file={root / 'server.crt'} -c ssl_key_file={root / 'server.key'}"
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(datadir),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "-t",
        "60",
        "start",
    )
    server = Server(port, datadir, bindir, run_as, ca_file)
    with psycopg.connect(
        f"postgresql://calhub@127.0.0.1:{port}/postgres", password=PASSWORD, autocommit=True
    ) as conn:
        conn.execute("CREATE DATABASE calhub")
    return server
