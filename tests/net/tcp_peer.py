"""Both ends of an idle TCP connection, for the namespace tests.

    tcp_peer.py serve IP PORT            listen, print "listening", then "accepted"
                                         per connection, holding each one open
    tcp_peer.py connect IP PORT SECONDS  connect, print the local port, then wait
                                         for the connection's fate and print it:
                                         "reset", "eof" or "alive" (nothing happened)
"""

import socket
import sys
import time


def serve(ip: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ip, port))
    listener.listen()
    print("listening", flush=True)
    held = []
    while True:
        conn, _ = listener.accept()
        held.append(conn)
        print("accepted", flush=True)


def connect(ip: str, port: int, seconds: float) -> None:
    conn = socket.create_connection((ip, port), timeout=5)
    print(conn.getsockname()[1], flush=True)
    conn.settimeout(seconds)
    started = time.monotonic()
    try:
        data = conn.recv(1)
        fate = "eof" if not data else "data"
    except ConnectionResetError:
        fate = "reset"
    except TimeoutError:
        fate = "alive"
    print(fate, round(time.monotonic() - started, 3), flush=True)


if __name__ == "__main__":
    mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "serve":
        serve(ip, port)
    else:
        connect(ip, port, float(sys.argv[4]))
