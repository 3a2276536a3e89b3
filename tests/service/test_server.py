"""The listening socket the service binds."""

from __future__ import annotations

import socket

from service.sockets import bind


def test_listening_socket_disables_nagle_for_accepted_connections() -> None:
    listener = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()
