"""Local Dask clusters that listen on loopback only and, by default, take only connections that show their
certificate.

Dask runs pickled code: whoever can reach a scheduler can run any code on its workers (``Client.run``), and any user
of the machine can reach 127.0.0.1. So a cluster started here binds to 127.0.0.1 and encrypts and authenticates every
connection with mutual TLS and a temporary certificate made for it (:func:`local_security`), which only this process
and the cluster's own workers hold. ``tls=False`` turns that off. Used by :class:`wmlib.distributed.DaskEvaluator`
and notebook 08.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

try:
    import dask
    import distributed
    from distributed import Security
except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency of the package
    raise ImportError("local Dask clusters need dask.distributed: pip install 'dask[distributed]'") from exc

LOOPBACK = "127.0.0.1"


def local_security() -> Security:
    """A :class:`distributed.Security` with a temporary self-signed certificate, kept in memory, for every role.

    Uses ``cryptography`` (:meth:`Security.temporary`) when installed, else the ``openssl`` command.
    """
    try:
        return Security.temporary()
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "TLS for a local cluster needs the `cryptography` package (pip install cryptography) "
            "or the `openssl` command"
        )
    with tempfile.TemporaryDirectory(prefix="wm-tls-") as tmp:
        key, cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "365",
                "-subj",
                "/CN=dask-internal",
                "-addext",
                "subjectAltName=DNS:dask-internal",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        k, c = key.read_text(), cert.read_text()
    return Security(
        require_encryption=True,
        tls_ca_file=c,
        tls_client_key=k,
        tls_client_cert=c,
        tls_scheduler_key=k,
        tls_scheduler_cert=c,
        tls_worker_key=k,
        tls_worker_cert=c,
    )


def has_bokeh() -> bool:
    """Whether the dashboard can be served (bokeh is an optional extra of Dask)."""
    try:
        import bokeh  # noqa: F401  (here: only asking whether the optional dashboard package is installed)
    except ImportError:
        return False
    return True


def local_cluster(workers: int = 2, security: Security | None = None, tls: bool = True, **kwargs):
    """A :class:`distributed.LocalCluster` of ``workers`` one-thread processes that listens on 127.0.0.1 only.

    Every connection is TLS with ``security``, by default (``tls`` true) a new :func:`local_security`; a
    :class:`distributed.Client` made from the cluster object (``Client(cluster)``) gets its certificate. ``tls=False``
    (and no ``security``) gives a plain tcp:// cluster, open to every local user. The dashboard (when bokeh is
    installed) is on 127.0.0.1 too, on a free port. Extra keyword arguments go to LocalCluster.
    """
    if security is None and tls:
        security = local_security()
    # The scheduler's HTTP server (the dashboard, or a page asking for bokeh) runs either way: keep it on loopback.
    options = dict(
        n_workers=max(1, int(workers)),
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        dashboard_address=f"{LOOPBACK}:0",
    )
    if security is not None:
        options.update(security=security, protocol="tls://")
    options.update(kwargs)
    # Dask's nanny would also put MALLOC_TRIM_THRESHOLD_ into this process's environment (and so into every
    # process started from here later); the workers do not need it (see _prepare_process).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return distributed.LocalCluster(**options)
