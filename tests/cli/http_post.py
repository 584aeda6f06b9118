"""POSTs records to a sluice http_in endpoint from several concurrent clients (Python stdlib only).

usage: http_post.py PORT CLIENTS TOTAL BATCH [--pad N] [--no-retry] [--requests N]
Client k sends the integers k*share+1 .. (k+1)*share (TOTAL split evenly) as JSON lines in
requests of BATCH records, each record {"n": i} (with --pad, plus a string of N bytes). A request
answered 429 or 503 is sent again (unless --no-retry: it is counted and the next one goes).
Prints a JSON summary: {"status": {code: count}, "accepted": records answered 200}."""
import http.client
import json
import sys
import threading
import time

args = sys.argv[1:]
port, clients, total, batch = (int(a) for a in args[:4])
pad = int(args[args.index("--pad") + 1]) if "--pad" in args else 0
retry = "--no-retry" not in args
status, accepted, lock = {}, [0], threading.Lock()
errors = []


def client(k):
    share = total // clients
    first = k * share + 1
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = first
    while i < first + share:
        n = min(batch, first + share - i)
        recs = [{"n": j, "pad": "x" * pad} if pad else {"n": j} for j in range(i, i + n)]
        body = "\n".join(json.dumps(r) for r in recs).encode()
        try:
            conn.request("POST", "/ingest", body, {"Content-Type": "application/x-ndjson"})
            resp = conn.getresponse()
            text = resp.read()
        except (ConnectionError, http.client.HTTPException) as e:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if not retry:
                with lock:
                    status["conn"] = status.get("conn", 0) + 1
                i += n
            time.sleep(0.01)
            continue
        with lock:
            status[resp.status] = status.get(resp.status, 0) + 1
        if resp.status == 200:
            got = json.loads(text)["accepted"]
            if got != n:
                errors.append("accepted %d of %d" % (got, n))
            with lock:
                accepted[0] += n
            i += n
        elif resp.status in (429, 503) and retry:
            time.sleep(0.005)
        elif resp.status in (429, 503):
            i += n
        else:
            errors.append("status %d: %s" % (resp.status, text))
            i += n
    conn.close()


threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"status": status, "accepted": accepted[0], "errors": errors}))
sys.exit(1 if errors else 0)
