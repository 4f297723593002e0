"""The demo's port check: a port in use is refused, one left in TIME_WAIT by a stopped demo is not."""

from __future__ import annotations

import socket

from iconosearch.demo_job import port_is_free


def test_listening_port_is_taken_and_time_wait_is_free() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert not port_is_free("127.0.0.1", port)
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    # The side that closes first keeps the connection in TIME_WAIT: here the server, as on Ctrl-C.
    conn.close()
    server.close()
    client.close()
    assert port_is_free("127.0.0.1", port)
