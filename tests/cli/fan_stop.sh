#!/usr/bin/env bash
# buffer_unordered / buffered end as soon as downstream stops (take has its records), even when
# every input record was already started and calls still wait: waiting calls are abandoned, their
# records released. With sluice.sleep on the virtual clock (the elapsed engine time shows whether
# the run waited for the sleepers) and with sluice.http against a server that never answers
# (bounded by a guard timeout: the run ends at once when it works).
. "$(dirname "$0")/lib.bash"

# ---- sleep, virtual clock: 20 calls all started (count <= concurrency), 10 quick, 10 an hour
for kind in buffer_unordered buffered; do
  cat >sleep.yaml <<YAML
pipeline: stop-sleep
lua: |
  function call(r)
    sluice.sleep(r <= 10 and 0.005 or 3600)
    return r
  end
stages:
  - generate: { count: 20 }
  - $kind: { concurrency: 50, fn: call }
  - take: 10
  - file: { path: out.txt }
YAML
  # the file sink writes on the I/O thread while a CPU is spare (it holds the clock); 8 workers
  # on fewer CPUs interleave the stages most
  for w in 1 2 8; do
    expect 0 "$S" run --quiet --virtual-time --workers $w --stats stats.json sleep.yaml
    seq 10 | cmp -s - <(sort -n out.txt) || fail "$kind: $(cat out.txt)"
    el=$(python3 -c 'import json; print(json.load(open("stats.json"))["elapsed_s"])')
    python3 -c "import sys; sys.exit(0 if $el < 1 else 1)" ||
      fail "$kind on $w workers waited for the sleeping calls: elapsed $el s (virtual); stats: $(cat stats.json)"
  done
done

# ---- http: the calls past the 10th never get an answer
start_httpd port
URL="http://127.0.0.1:$(cat port)"
for kind in buffer_unordered buffered; do
  cat >http.yaml <<YAML
pipeline: stop-http
lua: |
  function call(r)
    return sluice.http.get("$URL/s/" .. r .. (r <= 10 and "" or "?hang=1")).body
  end
stages:
  - generate: { count: 30 }
  - $kind: { concurrency: 50, fn: call }
  - take: 10
  - file: { path: out.txt }
YAML
  expect 0 timeout 20 "$S" run --quiet --workers 2 http.yaml
  for i in $(seq 10); do echo "/s/$i"; done | cmp -s - <(sort -t/ -k3 -n out.txt) || fail "$kind http: $(cat out.txt)"
  wait_for 5 test "$(httpd_stat conns)" -le 1 # the hanging requests were cancelled: only the one asking
done
echo ok
