#!/usr/bin/env python3
"""A local TCP echo server for workload "fanout" (bench/run): answers each line it reads on a
connection with the same line 20 ms later, until the client closes. Prints its port on stdout once it listens. usage: echo_server.py [PORT]"""
import asyncio
import sys


async def handle(reader, writer):
    while line := await reader.readline():
        await asyncio.sleep(0.02)
        writer.write(line)
        await writer.drain()
    writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
