# Deterministic access-log lines for workload "logs" (bench/run): "host method path status
# tx_bytes upstream_ms", ~100 bytes each; a Park-Miller generator (exact in awk's doubles, so
# every awk writes the same bytes). usage: mawk -v n=LINES -f bench/peers/gen_logs.awk > FILE
BEGIN {
  x = 42
  split("GET GET GET GET GET POST POST PUT DELETE HEAD", M, " ")
  split("items users orders search static", P, " ")
  for (i = 1; i <= n; i++) {
    x = (x * 16807) % 2147483647; r = x % 1000
    s = r < 880 ? 200 : (r < 920 ? 304 : (r < 960 ? 404 : (r < 985 ? 500 : 503)))
    x = (x * 16807) % 2147483647
    y = (x * 16807) % 2147483647
    printf "10.%d.%d.%d %s /api/v1/%s/%d/details?page=%d&sort=desc&session=%08x %d %d %d.%d\n",
      x % 256, int(x / 256) % 256, int(x / 65536) % 256, M[1 + x % 10], P[1 + y % 5], y % 100000,
      1 + y % 20, x, s, 100 + y % 90000, (x % 3000), y % 10
    x = y
  }
}
