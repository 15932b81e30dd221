#!/usr/bin/env bash
# tools/dump-test.t - the machine-readable dump and its pictures, end to end
# (make test): the hosted demo writes a dump (kmm-demo --dump), Python's
# json.loads reads it and its runs cover every frame once with the zones'
# free blocks; tools/mempicture.py draws it, and the PNGs have the layout's
# pixel size and, read back with matplotlib's image reader, the colours of
# the dump's states at the cells of known pages (free, allocated,
# reserved); the same dump inside a serial log between the markers draws
# the same picture; the hosted shell's `dump` command prints one. TAP.
#
# KMM_DEMO and KMM_SHELL name the binaries (default build/hosted/...).
set -u
cd "$(dirname "$0")/.."
demo=${KMM_DEMO:-build/hosted/kmm-demo}
shell=${KMM_SHELL:-build/hosted/kmm-shell}
py=/usr/bin/python3 # Debian's, where python3-matplotlib is (tools/deps.sh)
if [ ! -x "$demo" ] || [ ! -x "$shell" ]; then
    echo "1..0 # SKIP $demo or $shell is not built (make demo shell)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
ok() { # ok <condition-status> <description>
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
    fi
}

"$demo" --dump "$tmp/dump.json" > "$tmp/demo.out" 2>&1
ok $? "kmm-demo --dump writes a dump and succeeds"

# json.loads, and the document's own consistency.
"$py" - "$tmp/dump.json" <<'EOF' > "$tmp/json.out" 2>&1
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d["version"] == 1, d["version"]
f = d["frames"]
nxt = 0
free = {}
for r in f["runs"]:
    assert r["pfn"] == nxt and r["count"] > 0, r
    nxt += r["count"]
    if r["state"] == "free":
        assert r["count"] % (1 << r["order"]) == 0, r
        key = (r["zone"], r["order"])
        free[key] = free.get(key, 0) + (r["count"] >> r["order"])
assert nxt == f["pfn_end"], (nxt, f["pfn_end"])
for z in d["zones"]:
    for o, blocks in enumerate(z["free_blocks"]):
        assert free.get((z["zone"], o), 0) == blocks, (z["zone"], o, blocks)
assert [c["name"] for c in d["heap"]["caches"]].count("demo_inode") == 1
assert len(d["kva"]["areas"]) == d["kva"]["areas_count"] == 3
assert d["page_tables"]["kernel"]["tables"]["L4"] == 1
print("runs", len(f["runs"]))
EOF
ok $? "json.loads reads it; its runs cover every frame once and hold the zones' free blocks$(grep -v '^runs' "$tmp/json.out" | head -3 | tr '\n' ' ')"

tools/mempicture.py "$tmp/dump.json" -o "$tmp/pics" > "$tmp/pic.out" 2>&1
ok $? "mempicture.py draws the dump"
for p in physical buddy caches; do
    [ -s "$tmp/pics/$p.png" ]
    ok $? "$p.png exists"
done

# Sizes, and the colours of known pages' cells, from the dump alone: the
# test finds cells most of whose pages (a strict majority) are free,
# allocated or reserved, and asks the tool where they are (--locate).
"$py" - "$tmp/dump.json" "$tmp/pics" <<'EOF' > "$tmp/pixels.out" 2>&1
import importlib.util, json, subprocess, sys
import matplotlib.image as mpimg
spec = importlib.util.spec_from_file_location("mempicture", "tools/mempicture.py")
mp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mp)
d = json.load(open(sys.argv[1]))
pics = sys.argv[2]
pfn_end = d["frames"]["pfn_end"]

# The layout the tool documents, computed here.
ppc = 1
while -(-pfn_end // ppc) > mp.COLS * mp.MAX_ROWS:
    ppc *= 2
rows = -(-(-(-pfn_end // ppc)) // mp.COLS)
want = {
    "physical": (mp.TOP + rows * mp.CELL_PX + mp.BOTTOM, mp.LEFT + mp.COLS * mp.CELL_PX + mp.RIGHT),
    "buddy": (mp.BUDDY_SIZE[1], mp.BUDDY_SIZE[0]),
    "caches": (mp.caches_height(len(d["heap"]["caches"])), mp.CACHES_WIDTH),
}
img = {}
for name, (h, w) in want.items():
    img[name] = mpimg.imread(f"{pics}/{name}.png")
    got = img[name].shape[:2]
    assert got == (h, w), f"{name}.png is {got[1]}x{got[0]}, want {w}x{h}"
print("sizes ok")

# Cells with a strict majority of one (state, zone): the first such cell
# of each state asked for.
found = {}
for r in d["frames"]["runs"]:
    if r["state"] not in ("free", "allocated", "reserved") or r["state"] in found:
        continue
    c = -(-r["pfn"] // ppc)  # the first cell starting inside the run ...
    while c * ppc < r["pfn"] + r["count"]:
        inside = min((c + 1) * ppc, r["pfn"] + r["count"]) - c * ppc
        if inside * 2 > ppc:  # ... of which the run holds most pages
            found[r["state"]] = (c * ppc, r["zone"])
            break
        c += 1
assert set(found) == {"free", "allocated", "reserved"}, found
pfns = [found[s][0] for s in sorted(found)]
out = subprocess.run(["tools/mempicture.py", sys.argv[1], "--locate", *map(str, pfns)],
                     capture_output=True, text=True, check=True).stdout.splitlines()
phys = img["physical"]
for state, line in zip(sorted(found), out):
    loc = json.loads(line)
    zone = found[state][1]
    assert loc["pages_per_cell"] == ppc and loc["pfn"] == found[state][0], loc
    want_rgb = mp.colour(state, zone)
    assert want_rgb != mp.colour("absent", zone)
    for dy in range(loc["cell_px"]):
        for dx in range(loc["cell_px"]):
            px = tuple(int(round(v * 255)) for v in phys[loc["y"] + dy, loc["x"] + dx][:3])
            assert px == want_rgb, f"{state} {zone} page {loc['pfn']:#x}: pixel {px} at {loc}, want {want_rgb}"
    print(f"{state} {zone} page {loc['pfn']:#x}: cell at ({loc['x']}, {loc['y']}) is {want_rgb}")
EOF
ok $? "the pictures have the layout's sizes; free, allocated and reserved pages' cells have their states' colours $(tail -1 "$tmp/pixels.out")"
grep -q "^sizes ok" "$tmp/pixels.out" || cat "$tmp/pixels.out" >&2

# The same dump in a serial log: CR LF line ends, noise around the markers.
{
    printf 'kmm> dump\r\n--- kmm dump begin ---\r\n'
    sed 's/$/\r/' "$tmp/dump.json"
    printf -- '--- kmm dump end ---\r\nkmm> halt\r\n'
} > "$tmp/serial.log"
tools/mempicture.py "$tmp/serial.log" -o "$tmp/from-log" > /dev/null 2>&1 &&
    cmp -s "$tmp/pics/physical.png" "$tmp/from-log/physical.png"
ok $? "a dump inside a serial log between the markers draws the same picture"

# The hosted shell's dump command (the kernel shell's, on a simulated PC).
printf 'dump\nhalt\n' | KMM_SHELL_RAM_MIB=256 "$shell" > "$tmp/shell.log" 2>&1
"$py" - "$tmp/shell.log" <<'EOF'
import json, sys
t = open(sys.argv[1]).read().replace("\r", "")
a, b = t.index("--- kmm dump begin ---\n"), t.index("--- kmm dump end ---")
d = json.loads(t[a + 23:b])
assert d["version"] == 1 and sum(r["count"] for r in d["frames"]["runs"]) == d["frames"]["pfn_end"]
EOF
ok $? "the shell's dump command prints a dump between the markers"
tools/mempicture.py "$tmp/shell.log" -o "$tmp/from-shell" > /dev/null 2>&1 && [ -s "$tmp/from-shell/physical.png" ]
ok $? "mempicture.py draws the shell's dump from its log"

echo "1..$n"
