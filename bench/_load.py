"""A light closed-loop HTTP/1.1 load generator for the HTTP benches (``api.py``, ``clip_retrieval.py``).

Each client is one keep-alive connection that sends its next request as soon as the previous answer
is read. The protocol is h11's (the sans-I/O HTTP/1.1 library under httpx and uvicorn); this module
only moves bytes between h11 and asyncio streams.

Why not httpx: its client spent about 2 ms of CPU per request here. On a 2-core box the generator
shares the cores with the server it measures, so that cost throttled the server and queued requests
in the generator's own event loop. On the demo index, 16 httpx clients saw 187 req/s with p99 407 ms
while the server's own request histogram had 99 % of requests under 50 ms; this generator (0.3–0.6
ms of CPU per request) saw 426 req/s with p99 59 ms from the same server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, already encoded
    body: bytes = b""
    content_type: str = ""
    label: str = ""  # the kind of request, to tell kinds apart in the result


@dataclass(frozen=True)
class Answer:
    label: str
    status: str  # the HTTP status, or the name of the connection error
    seconds: float


@dataclass
class Result:
    """Every answer, the wall time, and this process's CPU time (the generator's own cost)."""

    answers: list[Answer] = field(default_factory=list)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0

    def latencies(self, label: str = "") -> list[float]:
        """Seconds to each 200 answer of ``label``."""
        return [a.seconds for a in self.answers if a.label == label and a.status == "200"]

    def statuses(self, label: str = "") -> dict[str, int]:
        return dict(Counter(a.status for a in self.answers if a.label == label))

    def failures(self, label: str = "") -> int:
        return sum(1 for a in self.answers if a.label == label and a.status != "200")


class Connection:
    """One HTTP/1.1 connection, kept alive while the server allows it and reopened when it does not
    (an HTTP/1.0 server, like Flask's development server, closes it after every answer)."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self._address = (url.hostname or "127.0.0.1", url.port or 80)
        self._host = url.netloc
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, base: str) -> Connection:
        connection = cls(base)
        await connection._connect()
        return connection

    async def _connect(self) -> None:
        self._streams = await asyncio.open_connection(*self._address)
        self._h11 = h11.Connection(h11.CLIENT)

    async def send(self, request: Request) -> tuple[int, bytes]:
        """The answer's status and body."""
        if self._streams is None:
            await self._connect()
        assert self._streams is not None
        reader, writer = self._streams
        headers = [("Host", self._host)]
        if request.body or request.method == "POST":
            headers += [("Content-Length", str(len(request.body)))]
        if request.content_type:
            headers.append(("Content-Type", request.content_type))
        out = self._h11.send(h11.Request(method=request.method, target=request.target, headers=headers))
        if request.body:
            out += self._h11.send(h11.Data(data=request.body))
        out += self._h11.send(h11.EndOfMessage())
        writer.write(out)
        status, body = 0, bytearray()
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                # b"" (closed) ends a body sent until close; h11 raises if the answer is cut short
                self._h11.receive_data(await reader.read(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        else:  # the server closes this connection: the next request opens another
            await self.close()
        return status, bytes(body)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            await writer.wait_closed()


async def closed_loop(
    base: str, clients: int, seconds: float, next_request: Callable[[int], Request]
) -> Result:
    """``clients`` connections sending ``next_request(client)`` one after another for ``seconds``."""
    result = Result()
    connections = [await Connection.open(base) for _ in range(clients)]  # opened before the clock

    async def client(i: int, deadline: float) -> None:
        while (start := time.perf_counter()) < deadline:
            request = next_request(i)
            try:
                status, _ = await connections[i].send(request)
            except (ConnectionError, h11.ProtocolError) as exc:
                result.answers.append(Answer(request.label, type(exc).__name__, 0.0))
                await connections[i].close()  # the next request opens a new connection
                continue
            result.answers.append(Answer(request.label, str(status), time.perf_counter() - start))

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i, started + seconds) for i in range(clients)))
    result.elapsed_s = time.perf_counter() - started
    result.client_cpu_s = time.process_time() - cpu
    for connection in connections:
        await connection.close()
    return result
