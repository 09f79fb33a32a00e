"""Who may talk to the embedded Dask cluster: nobody but this process's client.

On a shared login node, any user can open a TCP connection to 127.0.0.1; a Dask
scheduler that accepts it runs whatever that user sends, as you. So the embedded
``LocalCluster`` of :class:`~.dask.DaskExecutionBackend` speaks TLS with mutual
authentication under credentials made for it alone (distributed's
``Security.temporary()``: a fresh CA and certificates, held in memory, never on
disk): a connection without them fails the handshake (an in-process cluster,
``processes=False``, talks over inproc:// and listens on no port at all). Pass
``security=False`` to
accept any local connection again, or your own ``distributed.security.Security``.

No HTTP server either, unless asked for: Dask starts one (dashboard, health,
metrics) on every scheduler and worker even with ``dashboard_address=None`` — on
port 8787 for the scheduler. Unless ``dashboard_address=`` is given, each server
stops its HTTP listener as it starts (this module is their preload: distributed
calls :func:`dask_setup` in each scheduler and worker process, restarted workers
too).

Clusters reached by ``address=``/``scheduler_file=`` are secured by whoever started
them (``dask scheduler --tls-ca-file ... --tls-cert ... --tls-key ...``); give the
backend the matching ``security=`` (see docs/dask_hpc.md).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError

__all__ = ["PRELOAD", "dask_setup", "embedded_cluster_options"]

#: the module distributed preloads into each server of the embedded cluster
PRELOAD = __name__


def embedded_cluster_options(distributed: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``LocalCluster`` keyword arguments: the user's, plus TLS with temporary
    credentials and no HTTP servers unless the user chose otherwise."""
    options = dict(given)
    security = options.pop("security", True)
    if security is True and _in_process(options):
        security = False  # inproc://: nothing listens, nobody else can connect
    if security is True:
        security = _temporary(distributed)
    if security is not False and security is not None:
        options["security"] = security
    if options.get("dashboard_address") is None:
        options["dashboard_address"] = None
        options.setdefault("worker_dashboard_address", None)
        scheduler = dict(options.get("scheduler_kwargs") or {})
        scheduler.setdefault("dashboard", False)
        # Never 8787, never every interface, for the moment it listens.
        scheduler.setdefault("dashboard_address", "127.0.0.1:0")
        scheduler["preload"] = [*scheduler.get("preload", ()), PRELOAD]
        options["scheduler_kwargs"] = scheduler
        options["preload"] = [*options.get("preload", ()), PRELOAD]
    return options


def _in_process(options: dict[str, Any]) -> bool:
    """Threads in this process talking over inproc://, LocalCluster's choice for
    ``processes=False`` when no protocol is named."""
    protocol = options.get("protocol")
    return options.get("processes") is False and protocol in (None, "inproc", "inproc://")


def _temporary(distributed: Any) -> Any:
    try:
        import cryptography  # noqa: F401 - Security.temporary() needs it
    except ImportError:
        raise ConfigurationError(
            "the embedded Dask cluster is secured with TLS under temporary credentials, "
            "which needs the 'cryptography' package: pip install 'asyncflow-graph[dask]' "
            "(or cryptography); or pass security=False to DaskExecutionBackend to accept "
            "any local connection (not on a shared machine)"
        ) from None
    return distributed.security.Security.temporary()


def dask_setup(server: Any) -> None:
    """Preload hook, in each scheduler and worker: stop its HTTP listener."""
    http = getattr(server, "http_server", None)
    if http is not None:
        http.stop()
