#!/usr/bin/python3
"""mempicture.py - draw a kmm dump (kmm_dump_json, include/kmm/dump.h) as pictures.

    tools/mempicture.py [-o DIR] INPUT [--locate PFN ...]

INPUT is a dump (the hosted demo's `kmm-demo --dump FILE`), or a log holding
one between the lines `--- kmm dump begin ---` and `--- kmm dump end ---` (the
shell's `dump` command, captured from the kernel's serial console; the last
dump in the log is drawn), or `-` for standard input. Writes into DIR
(default: the current directory):

  physical.png  physical memory, one cell per page, or per 2^k pages when
                there are more frames than cells (the title says which):
                coloured by frame state, shaded by zone (DMA light, DMA32,
                Normal dark); a cell holding several states shows the one
                with the most pages (ties: the first in STATES' order)
  buddy.png     free blocks per order and zone, and the memory they hold
  caches.png    the heap's caches: memory held and used, by object size

and prints the paths. --locate PFN prints, for each frame number, where its
cell is in physical.png as one JSON object per line: {"pfn", "cell", "x", "y",
"pages_per_cell", "cell_px"} with (x, y) the cell's top-left pixel (x from the
left, y from the top); every pixel of the cell has its colour (colour()).

The layout is fixed, so a test can compute it: COLS cells per row of CELL_PX
pixels square, at most MAX_ROWS rows; the picture is LEFT + COLS * CELL_PX +
RIGHT pixels wide and TOP + rows * CELL_PX + BOTTOM high. buddy.png is
BUDDY_SIZE; caches.png is CACHES_WIDTH wide and caches_height(n) high.
Needs matplotlib (Debian: python3-matplotlib); draws with the Agg backend.
"""

import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

BEGIN = "--- kmm dump begin ---"
END = "--- kmm dump end ---"

# The physical picture's layout (pixels).
COLS = 512
CELL_PX = 2
MAX_ROWS = 320
LEFT, RIGHT, TOP, BOTTOM = 112, 16, 72, 136
DPI = 100
BUDDY_SIZE = (1000, 600)
CACHES_WIDTH = 1000

# Frame states (kmm/dump.h), in tie-breaking order, with their colours.
STATES = [
    ("free", (46, 160, 67)),
    ("pcp", (120, 200, 220)),
    ("allocated", (214, 39, 40)),
    ("slab", (255, 140, 0)),
    ("pagetable", (148, 80, 190)),
    ("reserved", (110, 110, 110)),
    ("deferred", (238, 220, 130)),
    ("interior", (0, 0, 0)),
    ("absent", (245, 245, 245)),
]
ZONES = ["DMA", "DMA32", "Normal"]
UNKNOWN = (255, 0, 255)
BACKGROUND = (255, 255, 255)
STATE_INDEX = {name: i for i, (name, _) in enumerate(STATES)}


def colour(state, zone):
    """The RGB (0-255 ints) of a cell whose pages are mostly (state, zone).
    A zone shades its state: DMA mixed 35% with white, Normal 30% with black;
    absent and interior frames look the same in every zone."""
    base = dict(STATES).get(state, UNKNOWN)
    if state in ("absent", "interior") or state not in STATE_INDEX:
        return base
    if zone == "DMA":
        return tuple(int(round(c + (255 - c) * 0.35)) for c in base)
    if zone == "Normal":
        return tuple(int(round(c * 0.7)) for c in base)
    return base


def read_dump(path):
    """The dump in path (a file or a log with markers; '-': stdin) as a dict."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8", errors="replace").read()
    text = text.replace("\r", "")
    if BEGIN in text:
        start = text.rindex(BEGIN) + len(BEGIN)
        end = text.find(END, start)
        if end < 0:
            raise SystemExit(f"mempicture: {path}: '{BEGIN}' without '{END}' (log cut short?)")
        text = text[start:end]
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"mempicture: {path}: not a kmm dump: {e}")


def pages_per_cell(pfn_end):
    """The smallest power of two of pages per cell that fits MAX_ROWS rows."""
    p = 1
    while -(-pfn_end // p) > COLS * MAX_ROWS:
        p *= 2
    return p


def physical_geometry(pfn_end):
    """(pages per cell, cells, rows, width, height) of physical.png."""
    ppc = pages_per_cell(pfn_end)
    cells = max(1, -(-pfn_end // ppc))
    rows = -(-cells // COLS)
    return ppc, cells, rows, LEFT + COLS * CELL_PX + RIGHT, TOP + rows * CELL_PX + BOTTOM


def locate(pfn, pfn_end):
    ppc, _, _, _, _ = physical_geometry(pfn_end)
    cell = pfn // ppc
    return {
        "pfn": pfn,
        "cell": cell,
        "x": LEFT + (cell % COLS) * CELL_PX,
        "y": TOP + (cell // COLS) * CELL_PX,
        "pages_per_cell": ppc,
        "cell_px": CELL_PX,
    }


def cell_keys(runs, ppc, cells):
    """For each cell, the (state, zone) holding most of its pages: an array
    of indexes into the returned key list (-1: no page)."""
    keys = sorted({(r["state"], r["zone"]) for r in runs},
                  key=lambda k: (STATE_INDEX.get(k[0], len(STATES)), ZONES.index(k[1]) if k[1] in ZONES else 9))
    index = {k: i for i, k in enumerate(keys)}
    pages = np.zeros((max(1, len(keys)), cells), dtype=np.int64)
    for r in runs:
        row = pages[index[(r["state"], r["zone"])]]
        first, end = r["pfn"], r["pfn"] + r["count"]
        c0, c1 = first // ppc, (end - 1) // ppc
        if c0 == c1:
            row[c0] += end - first
            continue
        row[c0] += (c0 + 1) * ppc - first
        row[c0 + 1:c1] += ppc
        row[c1] += end - c1 * ppc
    best = pages.argmax(axis=0)  # the first of equal counts: keys' order
    best[pages.sum(axis=0) == 0] = -1
    return keys, best


def human(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" or nbytes == int(nbytes) else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return str(nbytes)


def draw_physical(dump, path):
    frames = dump["frames"]
    pfn_end, runs = frames["pfn_end"], frames["runs"]
    page = dump.get("page_size", 4096)
    ppc, cells, rows, width, height = physical_geometry(pfn_end)
    keys, best = cell_keys(runs, ppc, cells)
    palette = np.array([colour(*k) for k in keys] + [BACKGROUND], dtype=np.uint8)
    grid = np.full(rows * COLS, len(keys), dtype=np.int64)
    grid[:cells] = np.where(best < 0, len(keys), best)
    image = palette[grid.reshape(rows, COLS)]
    image = np.repeat(np.repeat(image, CELL_PX, axis=0), CELL_PX, axis=1)

    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.figimage(image, xo=LEFT, yo=BOTTOM, origin="upper")
    scale = "one cell per page" if ppc == 1 else f"one cell = {ppc} pages ({human(ppc * page)}), the state of most of its pages"
    fig.text(LEFT / width, 1 - 14 / height, f"kmm physical memory: {pfn_end} frames, {human(pfn_end * page)}",
             fontsize=12, weight="bold", va="top")
    fig.text(LEFT / width, 1 - 36 / height,
             f"{scale}; a row of {COLS} cells is {human(COLS * ppc * page)}; colour: frame state, shade: zone",
             fontsize=8.5, va="top")
    step = max(1, rows // 10)
    for r in range(0, rows, step):
        y = TOP + r * CELL_PX + CELL_PX / 2
        fig.text((LEFT - 6) / width, 1 - y / height, f"0x{r * COLS * ppc * page:x}", fontsize=7,
                 ha="right", va="center", family="monospace")
    # One legend entry per colour: absent and interior frames look alike in every zone.
    totals = {}
    for r in runs:
        same_look = r["state"] in ("absent", "interior") or r["state"] not in STATE_INDEX
        label = r["state"] if same_look else f"{r['state']} {r['zone']}"
        totals[label] = totals.get(label, (colour(r["state"], r["zone"]), 0))
        totals[label] = (totals[label][0], totals[label][1] + r["count"])
    order = {(k[0] if k[0] in ("absent", "interior") else f"{k[0]} {k[1]}"): i for i, k in enumerate(keys)}
    handles = [Patch(facecolor=np.array(rgb) / 255, edgecolor="#444444", linewidth=0.4,
                     label=f"{label}: {human(n * page)}")
               for label, (rgb, n) in sorted(totals.items(), key=lambda t: order.get(t[0], len(order)))]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 4 / height), ncol=4,
               fontsize=8, frameon=False)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def draw_buddy(dump, path):
    zones = {}
    for z in dump["zones"]:  # nodes summed per zone
        zones.setdefault(z["zone"], [0] * len(z["free_blocks"]))
        zones[z["zone"]] = [a + b for a, b in zip(zones[z["zone"]], z["free_blocks"])]
    page = dump.get("page_size", 4096)
    fig, (ax_n, ax_m) = plt.subplots(1, 2, figsize=(BUDDY_SIZE[0] / DPI, BUDDY_SIZE[1] / DPI), dpi=DPI)
    orders = len(next(iter(zones.values()), [0] * 11))
    x = np.arange(orders)
    width = 0.8 / max(1, len(zones))
    for i, (name, blocks) in enumerate(zones.items()):
        shade = np.array(colour("free", name)) / 255
        mib = [b * (1 << o) * page / (1 << 20) for o, b in enumerate(blocks)]
        ax_n.bar(x + i * width - 0.4 + width / 2, blocks, width, color=shade, edgecolor="#333333",
                 linewidth=0.4, label=name)
        ax_m.bar(x + i * width - 0.4 + width / 2, mib, width, color=shade, edgecolor="#333333",
                 linewidth=0.4, label=name)
    ax_n.set_title("free blocks per order (buddyinfo)", fontsize=10)
    ax_n.set_ylabel("blocks")
    ax_n.set_yscale("symlog", linthresh=1)
    ax_m.set_title("free memory per order", fontsize=10)
    ax_m.set_ylabel("MiB")
    for ax in (ax_n, ax_m):
        ax.set_xticks(x)
        ax.set_xlabel("order (a block is 2^order pages)")
        ax.legend(fontsize=8)
    free = sum(z["free"] for z in dump["zones"])
    fig.suptitle(f"kmm free memory: {human(free * page)} in {sum(map(sum, zones.values()))} blocks", fontsize=12)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def caches_height(n):
    """caches.png's height for n caches."""
    return 160 + 24 * max(n, 4)


def draw_caches(dump, path):
    caches = sorted(dump["heap"]["caches"], key=lambda c: (c["object_size"], c["name"]))
    height = caches_height(len(caches))
    fig = plt.figure(figsize=(CACHES_WIDTH / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes([0.30, 88 / height, 0.66, 1 - 140 / height])
    y = np.arange(len(caches))
    held = [c["total_objects"] * c["object_size"] / 1024 for c in caches]
    used = [c["active_objects"] * c["object_size"] / 1024 for c in caches]
    ax.barh(y, held, color="#f5c08a", edgecolor="#996633", linewidth=0.4, label="in slabs (total objects)")
    ax.barh(y, used, height=0.5, color="#d2691e", label="allocated (active objects)")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{c['name']} ({c['object_size']} B, {c['active_objects']}/{c['total_objects']}, "
                        f"{c['total_slabs']}x{c['pages_per_slab']}p)" for c in caches], fontsize=7.5)
    ax.set_xlabel("KiB")
    ax.set_ylim(-0.6, max(len(caches), 4) - 0.4)
    ax.invert_yaxis()
    if caches:
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no heap caches", transform=ax.transAxes, ha="center")
    h = dump["heap"]
    fig.text(0.02, 1 - 16 / height,
             f"kmm heap caches by object size: held {human(h['bytes_held'])}, used {human(h['bytes_used'])}"
             f" (name, object size, active/total objects, slabs x pages per slab)",
             fontsize=10, va="top")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="a dump, a log holding one between markers, or - for stdin")
    ap.add_argument("-o", "--output", default=".", help="directory for the PNGs (default: .)")
    ap.add_argument("--locate", type=int, nargs="+", metavar="PFN",
                    help="print where these frames' cells are in physical.png, draw nothing")
    args = ap.parse_args()
    dump = read_dump(args.input)
    if dump.get("version") != 1:
        raise SystemExit(f"mempicture: {args.input}: dump version {dump.get('version')}, this tool reads 1")
    if args.locate:
        for pfn in args.locate:
            print(json.dumps(locate(pfn, dump["frames"]["pfn_end"])))
        return
    os.makedirs(args.output, exist_ok=True)
    for name, draw in (("physical", draw_physical), ("buddy", draw_buddy), ("caches", draw_caches)):
        path = os.path.join(args.output, name + ".png")
        draw(dump, path)
        print(path)


if __name__ == "__main__":
    main()
