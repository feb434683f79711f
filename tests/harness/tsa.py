"""A real RFC 3161 time-stamping authority on 127.0.0.1 for the tests: OpenSSL's
`openssl ts -reply` signs every answer, behind a small HTTP server that takes
application/timestamp-query and answers application/timestamp-reply (RFC 3161 section
3.4), as a public TSA does.

Each Tsa has its own CA and a TSA certificate issued by it (EC P-256, the extended key
usage timeStamping, critical, as RFC 3161 section 2.3 requires), made in its folder with
`cryptography`, and the config file `openssl ts` needs. The HTTP server runs in a thread
of the test; each request runs one `openssl ts -reply` and waits for it. `stop()` closes
the port (a TSA down: connection refused) and `start()` opens the same port again, so a
test can take the TSA away and bring it back under one URL. `digests` lists the hashes
the TSA accepts: a TSA that accepts none the client asks for answers with a refusal
(status rejection, failInfo badAlg), made by OpenSSL too.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.harness.netutil import LOOPBACK, free_port
from tests.harness.tlsutil import cert_name, write_key

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = {digests}
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def make_tsa_certificates(folder: Path, name: str) -> tuple[Path, Path]:
    """A CA and a TSA certificate it issued, in `folder`: (tsa.pem, ca.pem)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(cert_name(f"{name} test CA"))
        .issuer_name(cert_name(f"{name} test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(cert_name(f"{name} test TSA"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write_key(key, folder / "tsa.key")
    (folder / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return folder / "tsa.pem", folder / "ca.pem"


class Tsa:
    """A TSA on 127.0.0.1 (module docstring). `cert_file`: its certificate followed by its
    CA's, the file a caller hands `anchor --tsa-cert`."""

    def __init__(self, folder: Path, name: str = "tsa", *, digests: str = "sha256") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        tsa_pem, ca_pem = make_tsa_certificates(folder, name)
        self.cert_file = folder / "trust.pem"
        self.cert_file.write_bytes(tsa_pem.read_bytes() + ca_pem.read_bytes())
        (folder / "serial").write_text("01\n")
        self.config = folder / "openssl-ts.cnf"
        self.config.write_text(_CONFIG.format(dir=folder, digests=digests))
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/tsa"
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def reply(self, query: bytes) -> bytes:
        """`openssl ts -reply` for one query (one at a time: the serial file is shared)."""
        with self._lock:
            self.requests += 1
            q, r = self.folder / "query.tsq", self.folder / "reply.tsr"
            q.write_bytes(query)
            subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.config), "-queryfile", str(q),
                 "-out", str(r)],
                check=True, capture_output=True, timeout=20,
            )  # fmt: skip
            return r.read_bytes()

    def start(self) -> Tsa:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415, "want application/timestamp-query")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = tsa.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the tests' output stays the test's

        self._server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = self._thread = None
