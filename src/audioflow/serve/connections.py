"""uvicorn's HTTP protocol with a deadline for each request's headers.

uvicorn times out a connection only while it is idle between requests: one that opens and sends its
headers a byte at a time (slowloris) holds a socket and a file descriptor for as long as it likes. Here
every connection must complete a request's headers within ``header_timeout`` seconds of opening, and again
of each response's end (a kept-alive connection), or it is closed."""

from __future__ import annotations

import asyncio
from typing import Any


def protocol_with_header_deadline(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools when installed, else h11) closing connections whose request
    headers are not complete ``header_timeout`` seconds after the connection opened or its last response
    ended. A connection upgraded to a WebSocket has left the protocol and is not touched."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools is optional in uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class HeaderDeadline(Base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            # a new request replaces the cycle once its headers are complete: the same cycle at the
            # deadline means no request got that far since
            self._deadline = self.loop.call_later(header_timeout, self._headers_late, self.cycle)

        def _headers_late(self, cycle: Any) -> None:
            transport = self.transport
            if self.cycle is cycle and not transport.is_closing() and transport.get_protocol() is self:
                transport.close()

    HeaderDeadline.__name__ = f"HeaderDeadline{Base.__name__}"
    return HeaderDeadline


__all__ = ["protocol_with_header_deadline"]
