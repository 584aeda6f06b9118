# Workload "logs" (bench/run) for mawk and gawk: split 6 fields, keep status < 500, write jsonl.
$4 < 500 { printf "{\"host\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"tx_bytes\":%d,\"upstream_ms\":%s}\n", $1, $2, $3, $4, $5, $6 }
