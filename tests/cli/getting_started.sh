#!/usr/bin/env bash
# docs/getting-started.md is true: every file it shows (after a `<!-- file: PATH -->` line) is
# the file in the tree, and every command of its `console` blocks ("$ command", then the output
# expected on stdout and stderr together; a line "..." stands for any lines) runs in one fresh
# folder, with `examples` linked there and the build's sluice first on PATH, and prints that.
# Also: every relative link between the docs and from README.md names a file that exists.
. "$(dirname "$0")/lib.bash"
command -v dot >/dev/null || skip "graphviz is not installed"
ln -s "$ROOT/examples" examples
PATH="$B:$PATH" HOME="$T" python3 - "$ROOT" <<'PY'
import os, re, subprocess, sys
root = sys.argv[1]
page = open(os.path.join(root, "docs/getting-started.md")).read().split("\n")

def matches(want, got):
    """want: lines, "..." matching any run of lines; got: lines."""
    if not want:
        return not got
    if want[0] == "...":
        return any(matches(want[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and got[0] == want[0] and matches(want[1:], got[1:])

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

files = commands = 0
i = 0
while i < len(page):
    line = page[i]
    m = re.match(r"<!-- file: (\S+) -->$", line)
    if m:
        assert page[i + 1].startswith("```"), "a file marker must precede a fenced block"
        j = page.index("```", i + 2)
        shown = "\n".join(page[i + 2:j]) + "\n"
        if shown != open(os.path.join(root, m.group(1))).read():
            fail("the page shows %s differently from the file" % m.group(1))
        files += 1
        i = j + 1
        continue
    if line == "```console":
        j = page.index("```", i + 1)
        block = page[i + 1:j]
        k = 0
        while k < len(block):
            cmd = block[k][2:]
            assert block[k].startswith("$ "), "a console block starts with a command"
            k += 1
            want = []
            while k < len(block) and not block[k].startswith("$ "):
                want.append(block[k])
                k += 1
            r = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=20)
            got = r.stdout.decode().split("\n")
            if got and got[-1] == "":
                got.pop()
            if not matches(want, got):
                fail("'%s' printed:\n%s\n--- the page says:\n%s" % (cmd, "\n".join(got), "\n".join(want)))
            commands += 1
        i = j + 1
        continue
    i += 1
if files < 2 or commands < 8:
    fail("only %d files and %d commands checked" % (files, commands))
print("getting-started: %d files, %d commands" % (files, commands))

# relative links of the docs and the README
for doc in ["README.md"] + ["docs/" + f for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md")]:
    text = open(os.path.join(root, doc)).read()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        if not os.path.exists(os.path.join(root, os.path.dirname(doc), target)):
            fail("%s links to %s, which does not exist" % (doc, target))
PY
echo "getting_started: ok"
