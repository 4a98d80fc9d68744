"""`governor console [--listen ADDRESS:PORT] [--token T | --token-file F]`:
the web console and its JSON API (governor/console)."""
from __future__ import annotations

import sys

DEFAULT_LISTEN = "127.0.0.1:8470"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "console", help="serve the web console",
        description="A web application over the catalogue and the running groups: "
                    "applications and capture, groups and allocations, this host's capacity "
                    "and export, and live usage plotted every second. The JSON API is under "
                    "/api/. It listens on loopback unless told otherwise; any other address "
                    "needs a token, which every request must then carry (a login cookie, or "
                    "Authorization: Bearer TOKEN).")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDRESS:PORT",
                   help=f"where to listen (default {DEFAULT_LISTEN}; port 0: any free port; "
                        "[::1]:PORT for IPv6)")
    p.add_argument("--token", metavar="TOKEN",
                   help="require this token (at least 16 characters); other users can see a "
                        "command line: prefer --token-file")
    p.add_argument("--token-file", metavar="FILE",
                   help="require the token in FILE (mode 600 or stricter)")
    p.add_argument("--ssh-config", metavar="FILE",
                   help="ssh configuration for exports (ssh -F FILE)")
    p.add_argument("--remote-governor", default="governor", metavar="CMD",
                   help="the governor command on hosts exported to (default: governor)")


def parse_listen(text: str) -> tuple[str, int]:
    """"ADDRESS:PORT" or "[IPv6]:PORT" -> (address, port); ValueError naming --listen."""
    import ipaddress

    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"--listen: {text!r} is not ADDRESS:PORT (example: "
                         f"{DEFAULT_LISTEN})") from None
    if not sep or not 0 <= number < 65536:
        raise ValueError(f"--listen: {text!r}: bad port")
    return host, number


def main(args) -> int:
    import socket

    import uvicorn

    from ..console import Console, create_app
    from ..console.security import is_loopback, read_token

    try:
        host, port = parse_listen(args.listen)
        token = read_token(args.token, args.token_file)
        if not is_loopback(host) and token is None:
            raise ValueError(f"--listen: {host} is not a loopback address: give --token-file "
                             "(or --token), which every request must then carry")
    except ValueError as e:
        print(f"governor: {e}", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)        # connections wait from now on, even before the server runs
    except OSError as e:
        sock.close()
        print(f"governor: --listen: cannot listen on {args.listen}: {e.strerror}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    app = create_app(Console(token=token, host=shown, port=port, ssh_config=args.ssh_config,
                             remote_governor=args.remote_governor))
    print(f"governor console: http://{shown}:{port}/"
          + ("  (log in with the token)" if token else ""), flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                            lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0
