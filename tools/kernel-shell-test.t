#!/usr/bin/env python3
"""tools/kernel-shell-test.t - boot the demo kernel's shell mode under QEMU
(TCG) and drive it over the serial line as a person at the console would:
send a command, read the answer up to the next prompt, check its content.
TAP on stdout.

Each image boots twice: one session types every command in turn and ends
with `halt`; a second boot checks `reboot`. KMM_KERNEL names the images
(space-separated; default: the gcc and the clang build's kmm-test.elf32,
those that are built), each booted with QEMU's -kernel and the command
line "shell". Every answer must come within KSHELL_TIMEOUT seconds (default
120) and each boot within 4x that, or the test fails and QEMU is killed: a
broken shell never hangs it. The serial log goes to
<image>.shell.serial.log (the reboot boot's to <image>.reboot.serial.log).
"""
import json
import os
import re
import select
import subprocess
import sys
import time

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_IMAGES = "build/kernel/kmm-test.elf32 build/clang/kernel/kmm-test.elf32"
IMAGES = [i for i in os.environ.get("KMM_KERNEL", DEFAULT_IMAGES).split() if os.path.exists(i)]
TIMEOUT = float(os.environ.get("KSHELL_TIMEOUT", "120"))
PROMPT = b"kmm> "
EXIT_PASS = 33  # isa-debug-exit 0x10: (0x10 << 1) | 1
EXIT_RESET = 0  # -no-reboot: a reset ends QEMU with 0
BACKSPACE = "\x7f"
RAM_MIB = 256
# Boruix's fixed addresses (pgtest, memprottest) and its heap window; the
# kernel's kernel virtual areas take the window past its first 32 MiB.
PGTEST_VA = 0xFFFFFFFF90000000
PROTTEST_VA = 0xFFFFFFFF91000000
KVA_BASE = 0xFFFFFFFF92000000
HEAP_END = 0xFFFFFFFFA0000000
ALL_COMMANDS = ("help", "meminfo", "buddyinfo", "zoneinfo", "slabinfo", "vmallocinfo",
                "pagetables", "report", "misuse", "check", "leaks", "events", "selftest",
                "stress", "bench", "reboot", "halt", "memtest", "heaptest", "pgtest", "vmmtest",
                "memprottest", "user")

if not IMAGES:
    print(f"1..0 # SKIP no kernel image is built ({os.environ.get('KMM_KERNEL', DEFAULT_IMAGES)}:"
          " make kernel-images)")
    sys.exit(0)

n = 0
failed = 0


def ok(cond, desc, detail=""):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {desc}")
    if not cond:
        failed += 1
        for line in detail.splitlines()[-20:]:
            print("#   " + line)
    sys.stdout.flush()


class Boot:
    """One QEMU boot of image in shell mode, its serial line on pipes."""

    def __init__(self, image, log_name):
        self.log = open(f"{image}.{log_name}.serial.log", "wb")
        self.qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "max",
             "-m", f"{RAM_MIB}M", "-kernel", image, "-append", "shell", "-display", "none",
             "-monitor", "none", "-no-reboot", "-serial", "stdio",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.deadline = time.monotonic() + 4 * TIMEOUT
        self.buf = b""  # everything read and not yet consumed
        self.last_raw = b""  # the last answer as it came over the line

    def read_until(self, marker):
        """The serial output up to and including marker (bytes), or None
        at a timeout or when QEMU ends first."""
        end = min(time.monotonic() + TIMEOUT, self.deadline)
        while marker not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.qemu.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.qemu.stdout.fileno(), 4096)
            if not chunk:
                return None
            self.log.write(chunk)
            self.log.flush()
            self.buf += chunk
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def type(self, keys):
        try:
            self.qemu.stdin.write(keys.encode())
            self.qemu.stdin.flush()
        except BrokenPipeError:
            pass

    def send(self, keys):
        """Type keys (str) and return the answer up to the next prompt as
        text with CR LF as LF ("" when no prompt came)."""
        self.type(keys)
        out = self.read_until(PROMPT)
        self.last_raw = out or b""
        return self.last_raw.decode("latin-1").replace("\r\n", "\n")

    def leave(self, keys):
        """Type keys that end the machine; (exit code or None, the rest of
        the output as text)."""
        self.type(keys)
        try:
            rc = self.qemu.wait(timeout=max(1.0, min(TIMEOUT, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            rc = None
        rest = self.qemu.stdout.read() if rc is not None else b""
        self.log.write(rest)
        return rc, (self.buf + rest).decode("latin-1").replace("\r\n", "\n")

    def kill(self):
        if self.qemu.poll() is None:
            self.qemu.kill()
        self.qemu.wait()
        self.log.close()


def hexes(pattern, text):
    return [int(x, 16) for x in re.findall(pattern, text, re.M)]


def boruix_checks(b, t):
    """The Boruix shell's commands, through the Boruix interface over the
    kernel's own instance: each PASSes and shows what it did."""
    out = b.send("memtest\r")
    before = re.search(r"^  before: physical ([0-9]+) pages.*; heap ([0-9]+) bytes allocated", out,
                       re.M)
    after = re.search(r"^  after: physical ([0-9]+) pages.*; heap ([0-9]+) bytes allocated", out,
                      re.M)
    pages = hexes(r"^  page [0-9]: physical 0x([0-9a-f]+)", out)
    ok(re.search(r"^memtest: PASS \([0-9]+ steps\)$", out, re.M) is not None
       and "[FAIL]" not in out and before and after and before[2] == after[2]
       and before[1] == after[1] and len(pages) == 4 and len(set(pages)) == 4
       and all(p % 4096 == 0 and 16 << 20 <= p < RAM_MIB << 20 for p in pages)
       and "[OK] every block and page holds its own pattern" in out,
       f"{t}: memtest allocates, writes, verifies and frees through the Boruix interface: "
       "four distinct pages in RAM, heap bytes back where they were, PASS", out)

    out = b.send("heaptest\r")
    counts = re.findall(r"^  total allocated .*, current ([0-9]+) bytes, ([0-9]+) allocations, "
                        r"([0-9]+) frees$", out, re.M)
    ok(re.search(r"^heaptest: PASS \([0-9]+ steps\)$", out, re.M) is not None
       and "[FAIL]" not in out and len(counts) == 2
       and int(counts[0][0]) >= 10 * 32 + 8192 and counts[1][1] == counts[1][2]
       and "[OK] no memory leaked" in out and "[OK] large block verified" in out,
       f"{t}: heaptest: small blocks, every other one reallocated, an 8 KiB block verified, "
       "statistics, all freed, no leak, PASS", out)

    out = b.send("pgtest\r")
    pa = hexes(r"^\[OK\] physical page at 0x([0-9a-f]+)$", out)
    tr = hexes(rf"^\[OK\] 0x{PGTEST_VA:x} translates to 0x([0-9a-f]+), the page mapped$", out)
    back = hexes(r"^\[OK\] unmapped; it returned physical 0x([0-9a-f]+)$", out)
    ok(re.search(r"^pgtest: PASS \([0-9]+ steps\)$", out, re.M) is not None
       and "[FAIL]" not in out and len(pa) == 1 and tr == pa and back == pa
       and "[OK] read 0xdeadbeef through the mapping, 0xdeadbeef from the physical page" in out
       and "[OK] translation returns 0x0" in out,
       f"{t}: pgtest maps 0x{PGTEST_VA:x} (free in the kernel), translates, writes through it, "
       "unmaps, sees it unmapped, frees, PASS", out)

    out = b.send("vmmtest\r")
    total = re.search(r"^  total ([0-9]+) MiB, used ([0-9]+) KiB", out, re.M)
    blocks = hexes(r"^\[OK\] (?:range|mapped|large block) at 0x([0-9a-f]+)", out)
    ok(re.search(r"^vmmtest: PASS \([0-9]+ steps\)$", out, re.M) is not None
       and "[FAIL]" not in out
       and f"heap window 0x{PGTEST_VA:x} - 0x{HEAP_END:x}" in out
       and total and int(total[1]) == 224 and len(blocks) == 3
       and all(KVA_BASE <= v < HEAP_END for v in blocks)
       and "[OK] all four words read back" in out and "used 0 KiB as before" in out,
       f"{t}: vmmtest: the heap window's usage (224 MiB past the fixed part), three blocks in "
       "the library's part, words and pages verified, given back, PASS", out)

    out = b.send("memprottest\r")
    flags = re.findall(r"^  present (yes|no), writable (yes|no), user (yes|no), "
                       r"executable (yes|no)$", out, re.M)
    want = [("yes", "yes", "no", "yes"), ("yes", "no", "no", "yes"), ("yes", "yes", "no", "yes"),
            ("yes", "yes", "no", "no"), ("yes", "yes", "no", "no")]
    ok(re.search(r"^memprottest: PASS \([0-9]+ steps\)$", out, re.M) is not None
       and "[FAIL]" not in out and f"mapped at 0x{PROTTEST_VA:x}" in out and flags == want
       and "[OK] data intact: 0x12345678 0xabcdef00" in out
       and "[OK] data[0] 0xdeadbeef, data[1] 0xcafebabe" in out,
       f"{t}: memprottest at 0x{PROTTEST_VA:x}: read-write, read-only, read-write, "
       "no-execute, each step's flags as expected, data intact, PASS", out)

    out = b.send(f"pagetables 0x{PGTEST_VA:x}\r") + b.send(f"pagetables 0x{PROTTEST_VA:x}\r")
    ok(f"0x{PGTEST_VA:016x}: not mapped in the kernel space" in out
       and f"0x{PROTTEST_VA:016x}: not mapped in the kernel space" in out,
       f"{t}: pagetables shows both fixed addresses unmapped again afterwards", out)


def diag_checks(b, t):
    """buddyinfo, zoneinfo, vmallocinfo, pagetables, leaks, events, bench:
    each answer read over the line and cross-checked with another's."""
    out = b.send("meminfo\r")
    total = re.search(r"^MemTotal: +([0-9]+) kB", out, re.M)
    free = re.search(r"^MemFree: +([0-9]+) kB", out, re.M)
    ok(total and free and 200 * 1024 < int(total[1]) <= RAM_MIB * 1024
       and 0 < int(free[1]) <= int(total[1]) and "PageTables:" in out,
       f"{t}: meminfo shows the machine's RAM: MemTotal within its {RAM_MIB} MiB, MemFree "
       "below it", out)

    # Nothing runs between the two: buddyinfo's free blocks plus zoneinfo's
    # per-CPU cached pages are zoneinfo's free pages, zone by zone.
    buddy = b.send("buddyinfo\r")
    zones = b.send("zoneinfo\r")
    rows = {m[0]: [int(x) for x in m[1].split()]
            for m in re.findall(r"^  (DMA32|DMA|Normal) +((?:[0-9]+ +)*[0-9]+)$", buddy, re.M)}
    zrows = {m[0]: [int(x) for x in m[1:]]
             for m in re.findall(r"^(DMA|DMA32|Normal) +\S+ +([0-9]+) +([0-9]+) +([0-9]+) +"
                                 r"([0-9]+) +([0-9]+) +([0-9]+)$", zones, re.M)}
    agree = bool(rows) and all(
        z in zrows and sum(c << o for o, c in enumerate(blocks)) + zrows[z][2] == zrows[z][1]
        for z, blocks in rows.items())
    ok(agree and all(len(v) == 11 for v in rows.values()) and "unusbl" in buddy,
       f"{t}: buddyinfo's free blocks per order (11 orders) and zoneinfo's pcp pages add up to "
       "zoneinfo's free pages in every zone", buddy + zones)
    managed = sum(v[0] for v in zrows.values())
    ok(total and managed * 4 == int(total[1]) and "DMA32" in zrows,
       f"{t}: zoneinfo's managed pages are meminfo's MemTotal ({managed * 4} kB)", zones)

    out = b.send("vmallocinfo\r")
    ok(f"window [0x{KVA_BASE:016x}-0x{HEAP_END - 1:016x}] 224.0 MiB" in out
       and re.search(r"^  areas 0 \(vmalloc 0, vmap 0, raw 0\)", out, re.M) is not None,
       f"{t}: vmallocinfo shows the kernel virtual area window past Boruix's fixed part, "
       "no area left behind", out)

    out = b.send("pagetables\r")
    leaves = re.search(r"^  kernel space: mapped 4K ([0-9]+) .*, 2M ([0-9]+), 1G ([0-9]+);", out,
                       re.M)
    ok(re.search(r"^Page tables \([45] levels\)$", out, re.M) is not None and leaves
       and int(leaves[1]) > 0 and int(leaves[2]) > 0,
       f"{t}: pagetables shows the kernel space's 4 KiB and 2 MiB leaves", out)
    out = b.send("pagetables 0xffff800000200000\r")
    ok("0xffff800000200000 -> physical 0x200000, 2 MiB page, rw-" in out,
       f"{t}: pagetables of a direct-map address: 2 MiB, read-write, no-execute", out)

    out = b.send("leaks on\r") + b.send("leaks mark\r") + b.send("heaptest\r") + b.send("leaks\r")
    ok("allocation tracking on" in out and "mark: generation" in out
       and "heaptest: PASS" in out
       and re.search(r"^Heap leaks since generation [0-9]+: 0 objects", out, re.M) is not None,
       f"{t}: leaks on, mark, then heaptest's blocks all freed: leaks lists 0 objects", out)
    out = b.send("leaks off\r")
    ok("allocation tracking off" in out, f"{t}: leaks off switches tracking off", out)

    out = b.send("misuse\r") + b.send("report\r")
    ok(re.search(r"^Rejected calls \(misuse\): [0-9]+", out, re.M) is not None
       and "Physical memory map" in out and "Free blocks per order (buddyinfo)" in out
       and "Slab caches (slabinfo)" in out,
       f"{t}: misuse shows the refused calls; report writes every section", out)

    out = b.send("events\r")
    ok("error" not in out and "event" in out.lower() and len(out.splitlines()) > 2,
       f"{t}: events shows the heap's debugging modes and recent events", out)

    out = b.send("bench scale=256 reps=1\r")
    results = re.findall(r"^mmbench: RESULT (\S+) [0-9.]+ ns/op runs=[0-9.]+ ops=[0-9]+ fail=0$",
                         out, re.M)
    ok(re.search(r"^mmbench: START .* reps=1 scale_div=256 .*tsc_khz=[1-9][0-9]*", out, re.M)
       and len(results) == 18 and "P1_page_lifo_pair" in results and "H2_kmalloc_rand_step"
       in results and "bench: everything given back" in out
       and re.search(r"^bench: 18 results, 0 skipped, 0 failed allocations: PASS$", out, re.M),
       f"{t}: bench at 1/256 of the sizes: every workload's RESULT line with the TSC, "
       "everything given back, PASS", out)


def user_checks(b, t):
    """Programs in ring 3 (kernel/user.h): listed, run, ended as their
    exceptions say, every page back."""
    out = b.send("user\r")
    names = re.findall(r"^  ([a-z]+) +\S", out, re.M)
    ok({"hello", "stack", "kread", "priv", "badwrite"} <= set(names),
       f"{t}: user lists the ring-3 programs ({names})", out)

    out = b.send("user hello\r")
    ok("hello from ring 3\n" in out
       and re.search(r"^user: hello exited with status 0$", out, re.M) is not None
       and re.search(r"^user: 2 system calls, .*: all back$", out, re.M) is not None,
       f"{t}: user hello writes its line from ring 3, exits 0, and its space's pages all come "
       "back", out)

    out = b.send("user kread\r")
    m = re.search(r"^user: kread killed by #PF page fault at rip 0x400000 "
                  r"\(address 0x(ffffffff8[0-9a-f]+)\)$", out, re.M)
    ok(m is not None and "reason: user access to a kernel page" in out
       and re.search(r"^user: .*: all back$", out, re.M) is not None,
       f"{t}: user kread, reading kernel text from ring 3, is killed by a page fault that "
       "names the reason, and the kernel goes on", out)

    out = b.send("user priv\r")
    ok(re.search(r"^user: priv killed by #GP general protection at rip 0x400000$", out, re.M)
       is not None, f"{t}: user priv (cli in ring 3) is killed by a general protection fault",
       out)

    out = b.send("user heap\r")
    ok(re.search(r"^user: heap exited with status 0$", out, re.M) is not None
       and re.search(r"^user: \d+ system calls, 64 page faults resolved, .*: all back$", out,
                     re.M) is not None,
       f"{t}: user heap reads zeros at each demand-zero page's first touch (64 faults resolved), "
       "every page back", out)

    out = b.send("user fork\r")
    ok(re.search(r"^user: fork exited with status 0$", out, re.M) is not None
       and re.search(r"^user: .*, 1 children; .*: all back$", out, re.M) is not None,
       f"{t}: user fork: the child's copy-on-write pages are its own, the parent's unchanged, "
       "every page back", out)

    out = b.send("user nosuch\r")
    ok("user: nosuch: no such program" in out, f"{t}: user refuses an unknown program", out)


def session(image, t):
    b = Boot(image, "shell")
    try:
        banner = b.read_until(PROMPT)
        ok(banner is not None and b"boot mode shell" in banner and b"TSC " in banner
           and b"Boruix interface is not available" not in banner,
           f"{t}: the shell mode boots, measures the TSC, adopts its instance for Boruix and "
           "prompts", (banner or b.buf).decode("latin-1"))
        if banner is None:
            return

        out = b.send("help\r")
        missing = [c for c in ALL_COMMANDS if not re.search(rf"^  {c} ", out, re.M)]
        ok(not missing, f"{t}: help lists every command (missing: {missing})", out)
        ok(b"\r\n  meminfo" in b.last_raw
           and b"\n  meminfo" not in b.last_raw.replace(b"\r\n", b""),
           f"{t}: the serial line gets CR LF line ends")

        boruix_checks(b, t)
        user_checks(b, t)
        diag_checks(b, t)

        out = b.send("stress 2000 5\r")
        ok("stress: 2000 random operations (seed 5)" in out and " 0 mismatches" in out
           and "stress: everything given back" in out and "stress: PASS" in out,
           f"{t}: stress on the kernel's own instance verifies contents, gives everything "
           "back, passes", out)

        out = b.send("slabinfo\r")
        heap = re.search(r"^Heap: held .*, ([0-9]+) allocs, ([0-9]+) frees", out, re.M)
        # stress and the Boruix commands used the kernel heap and gave every block back.
        ok(heap and "Slab caches (slabinfo)" in out and int(heap[1]) > 0 and heap[1] == heap[2],
           f"{t}: slabinfo shows the kernel heap: every allocation freed", out)

        # The dump, captured from the serial line as a person would save it,
        # and drawn by the picture tool from the saved log.
        out = b.send("dump\r")
        m = re.search(r"^--- kmm dump begin ---\n(.*)^--- kmm dump end ---$", out, re.M | re.S)
        try:
            dump = json.loads(m[1]) if m else None
        except ValueError:
            dump = None
        ok(dump is not None and dump["version"] == 1
           and sum(r["count"] for r in dump["frames"]["runs"]) == dump["frames"]["pfn_end"],
           f"{t}: dump prints the JSON dump between its markers, its runs covering every frame",
           out[-3000:])
        pics = subprocess.run(["tools/mempicture.py", f"{image}.shell.serial.log", "-o",
                               f"{image}.pictures"], capture_output=True, text=True)
        ok(pics.returncode == 0 and os.path.exists(f"{image}.pictures/physical.png"),
           f"{t}: mempicture.py draws the dump from the saved serial log",
           pics.stdout + pics.stderr)

        out = b.send("check\r")
        ok(re.search(r"^check: kmm_check ok \([0-9]+ frame descriptors", out, re.M) is not None,
           f"{t}: check says the kernel's instance is ok with what it walked", out)

        # "chekk", two backspaces, "ck": the line entered is "check".
        out = b.send("chekk" + BACKSPACE * 2 + "ck\r")
        ok(re.search(r"^check: kmm_check ok", out, re.M) is not None
           and "unknown command" not in out,
           f"{t}: a line edited with Backspace runs the edited command", out)

        out = b.send("frobnicate\r")
        ok("error: unknown command 'frobnicate'" in out and "kmm_check" not in out,
           f"{t}: an unknown command is refused with a clear message", out)

        out = b.send("pgtest now\r")
        ok("error: pgtest: takes no arguments" in out and "[TEST" not in out,
           f"{t}: a Boruix command given an argument refuses and runs nothing", out)

        out = b.send("selftest hw\r")
        ok(re.search(r"^selftest: PASS \(0 failed\)", out, re.M) is not None
           and re.search(r"^ok [0-9]+ ", out, re.M) is not None,
           f"{t}: selftest runs the in-kernel hardware checks (KTAP) and passes", out)

        out = b.send("check\r")
        ok(re.search(r"^check: kmm_check ok", out, re.M) is not None,
           f"{t}: the instance still checks ok after selftest gave its arena back", out)

        rc, rest = b.leave("halt\r")
        ok(rc == EXIT_PASS and "halting" in rest,
           f"{t}: halt says so and leaves QEMU with the success code (exit {rc}, expected "
           f"{EXIT_PASS})", rest)
    finally:
        b.kill()


def reboot_session(image, t):
    b = Boot(image, "reboot")
    try:
        banner = b.read_until(PROMPT)
        rc, rest = b.leave("reboot\r") if banner is not None else (None, "")
        # -no-reboot turns the machine's reset into QEMU's exit with 0: not
        # halt's 33, not a failure's 35, and no panic line.
        ok(rc == EXIT_RESET and "rebooting" in rest and "panic" not in rest,
           f"{t}: reboot says so and resets the machine (QEMU exits {rc} under -no-reboot, "
           f"expected {EXIT_RESET})", rest)
    finally:
        b.kill()


for image in IMAGES:
    tag = "clang" if "/clang/" in image else "gcc" if image.startswith("build/kernel/") else image
    session(image, tag)
    reboot_session(image, tag)
print(f"1..{n}")
sys.exit(1 if failed else 0)
