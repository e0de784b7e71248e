"""The peer for bench/uppercase.py: a minimal asyncio uppercase server (TCP+UDP).

Does the same work as ours (UTF-8 decode with surrogateescape, str.upper,
line framing), nothing more. Prints "PORTS <tcp> <udp>" once listening.
"""

import asyncio
import sys


def upper(data: bytes) -> bytes:
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


class Line(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if lines:
            self.transport.write(b"".join(upper(l) + b"\n" for l in lines))


class Datagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if data:
            self.transport.sendto(upper(data), addr)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Line, "127.0.0.1", 0)
    transport, _ = await loop.create_datagram_endpoint(Datagram, local_addr=("127.0.0.1", 0))
    print("PORTS", server.sockets[0].getsockname()[1], transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
