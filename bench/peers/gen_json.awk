# Deterministic jsonl records for workload "json_etl" (bench/run), ~300 bytes each, nested
# objects and arrays, escaped strings; keys sorted at every level (so every tool writes them in
# the same order), doubles exact in binary. usage: mawk -v n=RECORDS -f bench/peers/gen_json.awk
BEGIN {
  x = 7
  split("free silver gold platinum", T, " ")
  split("web mobile api batch", C, " ")
  split("25 5 75", F, " ")
  for (i = 1; i <= n; i++) {
    x = (x * 16807) % 2147483647; c = x % 50000
    x = (x * 16807) % 2147483647
    printf "{\"amount\":%d.%s,\"customer\":{\"email\":\"user%d@example.com\",\"id\":%d,\"name\":\"User %d\",\"tier\":\"%s\"},", \
      x % 100000, F[1 + x % 3], c, c, c, T[1 + x % 4]
    printf "\"debug\":{\"host\":\"worker-%d\",\"trace\":\"%08x%08x\"},\"id\":%d,", x % 16, x, c * 7919, i
    printf "\"items\":[{\"price\":%d.5,\"qty\":%d,\"sku\":\"SKU-%05d\"},{\"price\":%d.75,\"qty\":%d,\"sku\":\"SKU-%05d\"}],", \
      x % 500, 1 + x % 5, x % 99991, c % 300, 1 + c % 3, c % 77777
    printf "\"msg\":\"GET /api/v1/orders/%d \\\"ok\\\"\\tdone\",\"ok\":%s,\"tags\":[\"%s\",\"n%d\"],\"ts\":%d}\n", \
      i, (x % 3 ? "true" : "false"), C[1 + c % 4], x % 13, 1700000000 + i
  }
}
