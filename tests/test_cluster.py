"""wmlib.cluster: the certificate of a local TLS cluster, with or without the `cryptography` package.

(Clusters themselves, on loopback and over TLS, are started in test_distributed.)
"""

import shutil
import subprocess
import sys

import pytest

HANDSHAKE = """
import socket, ssl, sys, threading
if sys.argv[1] == "openssl":
    sys.modules["cryptography"] = None  # as if it were not installed: the openssl command makes the certificate
from wmlib.cluster import local_security

sec = local_security()
assert sec.require_encryption
server = sec.get_listen_args("scheduler")["ssl_context"]
client = sec.get_connection_args("worker")["ssl_context"]
assert client.verify_mode == ssl.CERT_REQUIRED and server.verify_mode == ssl.CERT_REQUIRED
a, b = socket.socketpair()
peer = {}

def serve():
    with server.wrap_socket(a, server_side=True) as s:
        peer["client"] = s.getpeercert()["subject"]
        s.sendall(s.recv(5).upper())

t = threading.Thread(target=serve)
t.start()
with client.wrap_socket(b) as s:  # both sides show the cluster's certificate and check the other's
    s.sendall(b"hello")
    print(s.recv(5).decode(), s.version(), s.getpeercert()["subject"], peer.get("client"))
t.join()
"""


@pytest.mark.parametrize("maker", ["cryptography", "openssl"])
def test_local_security_gives_every_role_a_working_mutual_tls_certificate(maker):
    if maker == "openssl" and shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    out = subprocess.run([sys.executable, "-c", HANDSHAKE, maker], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HELLO TLSv1.") and out.stdout.count("dask-internal") == 2, out.stdout
