"""A strict checker of the Prometheus text exposition format (0.0.4), for tests/cli/metrics.sh.

usage: promcheck.py METRICS_FILE [STATS_JSON]...
Checks every line (HELP/TYPE comments, samples, names, label escapes, values), that a family's
TYPE comes once and before its samples, that families are not interleaved, that no series
repeats and that counters end in _total. With STATS_JSON files (the JSON of --stats or /stats),
checks that the per-stage counters equal their figures. Exits 1 with the first problem."""
import json
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s=%s)(?:,%s=%s)*,?)?\})? (\S+)(?: (-?\d+))?$" % (NAME, LABEL, VALUE, LABEL, VALUE))
PAIR = re.compile(r"(%s)=(%s)" % (LABEL, VALUE))
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def fail(n, line, why):
    sys.exit("line %d: %s: %r" % (n, why, line))


def unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v[1:-1])


def parse(text):
    if not text.endswith("\n"):
        sys.exit("the exposition does not end with a newline")
    types, helps, seen, done, series = {}, set(), set(), set(), {}
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            if not m:
                if re.match(r"^# (HELP|TYPE)\b", line):
                    fail(n, line, "malformed HELP/TYPE")
                continue
            kind, name, rest = m.groups()
            if name in done:
                fail(n, line, "family %s comes back after other families" % name)
            if kind == "TYPE":
                if name in types:
                    fail(n, line, "second TYPE")
                if name in seen:
                    fail(n, line, "TYPE after samples")
                if rest not in TYPES:
                    fail(n, line, "unknown type")
                types[name] = rest
            else:
                if name in helps:
                    fail(n, line, "second HELP")
                if re.search(r"\\[^\\n]", rest):
                    fail(n, line, "bad escape in HELP")
                helps.add(name)
            if current and current != name:
                done.add(current)
            current = name
            continue
        if not line.strip():
            fail(n, line, "blank line")
        m = SAMPLE.match(line)
        if not m:
            fail(n, line, "not a sample")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        if name in done:
            fail(n, line, "family %s interleaved with another" % name)
        if current and current != name:
            done.add(current)
        current = name
        try:
            float(value) if value not in ("NaN", "+Inf", "-Inf") else 0
        except ValueError:
            fail(n, line, "bad value")
        pairs = PAIR.findall(labels)
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            fail(n, line, "repeated label")
        key = (name, tuple(sorted((k, unescape(v)) for k, v in pairs)))
        if key in series:
            fail(n, line, "repeated series")
        if types.get(name) == "counter" and not name.endswith("_total"):
            fail(n, line, "a counter not ending in _total")
        if types.get(name) == "counter" and float(value) < 0:
            fail(n, line, "a negative counter")
        series[key] = float(value)
        seen.add(name)
    return types, series


def main():
    types, series = parse(open(sys.argv[1], encoding="utf-8").read())
    by_stage = {}
    for (name, labels), v in series.items():
        d = dict(labels)
        if "stage" in d and "state" not in d:
            by_stage.setdefault(d["stage"], {})[name] = v
    fields = {"in": "records_in", "out": "records_out", "errors": "errors", "dropped": "dropped",
              "retries": "retries", "dead_letter": "dead_letter", "breaker_changes": "breaker_changes"}
    for path in sys.argv[2:]:
        stages = json.load(open(path))["stages"]
        if set(stages) != set(by_stage):
            sys.exit("%s: stages %s, /metrics has %s" % (path, sorted(stages), sorted(by_stage)))
        for stage, figures in stages.items():
            for f, metric in fields.items():
                if f not in figures:
                    continue
                got = by_stage[stage].get("sluice_stage_%s_total" % metric)
                if got != figures[f]:
                    sys.exit("%s: stage %s %s is %s, /metrics says %s" % (path, stage, f, figures[f], got))
            if "breaker" in figures:
                on = [dict(l)["state"] for (n, l), v in series.items()
                      if n == "sluice_stage_breaker_state" and dict(l)["stage"] == stage and v == 1]
                if on != [figures["breaker"]]:
                    sys.exit("%s: stage %s breaker %s, /metrics says %s" % (path, stage, figures["breaker"], on))
    print("ok: %d series, %d families" % (len(series), len(types)))


main()
