"""Run the app under uvicorn on a socket bound here, so that the address printed (with --port 0, the port the
system chose) is the one served, and the model is loaded before anything listens."""

import ipaddress
import socket

from dermcli.core.errors import DermcliError
from dermcli.serving import TOKEN_VARIABLE
from dermcli.serving.service import Service
from dermcli.serving.uploads import DEFAULT_LIMITS, Limits


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any network
        return False


def bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DermcliError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(2048)  # connections made from here on wait for uvicorn in the backlog
    return sock


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000, limits: Limits = DEFAULT_LIMITS, token: str | None = None,
          cors: str | None = None, log=print) -> None:
    """Serve until interrupted. Off the loopback interface without a token, anyone who reaches the port can use it: warned."""
    import uvicorn  # the web stack only for `serve` (the dermcli[serve] extra)

    from dermcli.serving.api import create_app

    if not is_loopback(host):
        log(f"warning: --host {host} serves every network this machine is on: anyone who can reach port {port} can use the model"
            + ("" if token else f" (set --token or ${TOKEN_VARIABLE} to require a bearer token)"))
    sock = bound_socket(host, port)
    where = sock.getsockname()
    shown = f"[{where[0]}]" if sock.family == socket.AF_INET6 else where[0]
    log(f"serving {service.name} ({service.weights.name}) on http://{shown}:{where[1]}/ "
        f"(API docs at /docs{', bearer token required on /v1/' if token else ''}); Ctrl-C stops it")
    # uvicorn's own log only for its warnings: the app logs one line per request itself
    # on loopback, only requests addressed to this machine by name: a web page's DNS rebinding cannot reach the model
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] if is_loopback(host) else None
    config = uvicorn.Config(create_app(service, limits, token, cors, log, hosts), log_level="warning", access_log=False, server_header=False,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
