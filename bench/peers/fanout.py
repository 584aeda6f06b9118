#!/usr/bin/env python3
"""Workload "fanout" (bench/run) in Python asyncio: CALLS calls that each wait 20 ms, at most
500 at once (asyncio.Semaphore), writing each call's number on its own line to OUT as it finishes
(what sluice's buffer_unordered -> file jsonl writes).

  fanout.py sleep CALLS OUT         each call is asyncio.sleep(0.02)
  fanout.py tcp CALLS OUT PORT      each call is a request to the echo server on 127.0.0.1:PORT
                                    (bench/peers/echo_server.py, which answers after 20 ms)
                                    over a pool of 500 kept-alive connections (opened in the
                                    timed run): send the number, read it back
"""
import asyncio
import sys


async def main(mode, calls, out_path, port):
    sem = asyncio.Semaphore(500)
    done = []
    pool = asyncio.Queue()
    if mode == "tcp":
        for conn in await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(500))):
            pool.put_nowait(conn)

    async def call(i):
        async with sem:
            if mode == "sleep":
                await asyncio.sleep(0.02)
                done.append(i)
                return
            reader, writer = await pool.get()
            writer.write(b"%d\n" % i)
            await writer.drain()
            line = await reader.readline()
            pool.put_nowait((reader, writer))
            done.append(int(line))

    await asyncio.gather(*(call(i) for i in range(1, calls + 1)))
    while not pool.empty():
        pool.get_nowait()[1].close()
    with open(out_path, "w") as f:
        f.write("".join("%d\n" % i for i in done))


if __name__ == "__main__":
    mode, calls, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    asyncio.run(main(mode, calls, out_path, port))
