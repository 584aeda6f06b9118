#!/usr/bin/env python3
"""Workload "fanout" (bench/run) in Python asyncio: CALLS calls that each wait 20 ms, at most
500 at once (asyncio.Semaphore), writing each call's number on its own line to OUT as it finishes
(what sluice's buffer_unordered -> file jsonl writes).

  fanout.py sleep CALLS OUT [C]        each call is asyncio.sleep(0.02)
  fanout.py http CALLS OUT PORT [C]    each call is GET /item/<number> to sluice_test_httpd on
                                       127.0.0.1:PORT (started by bench/run or
                                       bench/http_fanout.sh), which answers after its delay with
                                       the path as its body (checked); HTTP/1.1 over a pool of C
                                       kept-alive connections opened in the timed run
C: calls at once (default 500).
"""
import asyncio
import sys


async def main(mode, calls, out_path, port, c):
    sem = asyncio.Semaphore(c)
    done = []
    pool = asyncio.Queue()
    if mode == "http":
        for conn in await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(c))):
            pool.put_nowait(conn)

    async def call(i):
        async with sem:
            if mode == "sleep":
                await asyncio.sleep(0.02)
                done.append(i)
                return
            reader, writer = await pool.get()
            path = b"/item/%d" % i
            writer.write(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if body != path:
                raise RuntimeError("wrong answer for %d: %r" % (i, body))
            pool.put_nowait((reader, writer))
            done.append(i)

    await asyncio.gather(*(call(i) for i in range(1, calls + 1)))
    while not pool.empty():
        pool.get_nowait()[1].close()
    with open(out_path, "w") as f:
        f.write("".join("%d\n" % i for i in done))


if __name__ == "__main__":
    mode, calls, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rest = [int(a) for a in sys.argv[4:]]
    port = rest.pop(0) if mode == "http" else 0
    asyncio.run(main(mode, calls, out_path, port, rest[0] if rest else 500))
