#!/usr/bin/env python3
"""tools/kernel-shell-test.t - boot the demo kernel's shell mode under QEMU
(TCG) and drive it over the serial line as a person at the console would:
send a command, read the answer up to the next prompt, check its content.
TAP on stdout.

KMM_KERNEL names the image (default build/kernel/kmm-test.elf32, booted
with QEMU's -kernel and the command line "shell"). Every answer must come
within KSHELL_TIMEOUT seconds (default 120) and the whole run within 4x
that, or the test fails and QEMU is killed: a broken shell never hangs it.
The serial log goes to <image>.shell.serial.log.
"""
import os
import re
import select
import subprocess
import sys
import time

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
IMAGE = os.environ.get("KMM_KERNEL", "build/kernel/kmm-test.elf32")
TIMEOUT = float(os.environ.get("KSHELL_TIMEOUT", "120"))
PROMPT = b"kmm> "
EXIT_PASS = 33  # isa-debug-exit 0x10: (0x10 << 1) | 1
BACKSPACE = "\x7f"

if not os.path.exists(IMAGE):
    print(f"1..0 # SKIP {IMAGE} is not built (make kernel)")
    sys.exit(0)

log = open(IMAGE + ".shell.serial.log", "wb")
qemu = subprocess.Popen(
    ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m", "256M",
     "-kernel", IMAGE, "-append", "shell", "-display", "none", "-monitor", "none",
     "-no-reboot", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
deadline_all = time.monotonic() + 4 * TIMEOUT
buf = b""  # everything read and not yet consumed
last_raw = b""  # the last answer as it came over the line

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


def read_until(marker):
    """The serial output up to and including marker (bytes), or None at a
    timeout or when QEMU ends first."""
    global buf
    end = min(time.monotonic() + TIMEOUT, deadline_all)
    while marker not in buf:
        left = end - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([qemu.stdout], [], [], left)
        if not r:
            continue
        chunk = os.read(qemu.stdout.fileno(), 4096)
        if not chunk:
            return None
        log.write(chunk)
        log.flush()
        buf += chunk
    i = buf.index(marker) + len(marker)
    out, buf = buf[:i], buf[i:]
    return out


def send(keys):
    """Type keys (str) and return the answer up to the next prompt as text
    with CR LF as LF ("" when no prompt came)."""
    try:
        qemu.stdin.write(keys.encode())
        qemu.stdin.flush()
    except BrokenPipeError:
        return ""
    global last_raw
    out = read_until(PROMPT)
    last_raw = out or b""
    return last_raw.decode("latin-1").replace("\r\n", "\n")


def finish():
    if qemu.poll() is None:
        qemu.kill()
    qemu.wait()
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


banner = read_until(PROMPT)
ok(banner is not None and b"boot mode shell" in banner and b"TSC " in banner,
   "the shell mode boots, measures the TSC and prompts",
   (banner or buf).decode("latin-1"))
if banner is None:
    finish()

out = send("help\r")
missing = [c for c in ("help", "meminfo", "buddyinfo", "zoneinfo", "slabinfo", "vmallocinfo",
                       "pagetables", "check", "leaks", "selftest", "stress", "bench", "reboot",
                       "halt") if not re.search(rf"^  {c} ", out, re.M)]
ok(not missing, f"help lists every command (missing: {missing})", out)
ok(b"\r\n  meminfo" in last_raw and b"\n  meminfo" not in last_raw.replace(b"\r\n", b""),
   "the serial line gets CR LF line ends")

out = send("meminfo\r")
total = re.search(r"^MemTotal: +([0-9]+) kB", out, re.M)
free = re.search(r"^MemFree: +([0-9]+) kB", out, re.M)
# 256 MiB of RAM: the instance manages most of it and most is free.
ok(total and free and 200 * 1024 < int(total[1]) <= 256 * 1024
   and 0 < int(free[1]) <= int(total[1]) and "PageTables:" in out,
   "meminfo shows the machine's RAM: MemTotal within its 256 MiB, MemFree below it", out)

out = send("stress 2000 5\r")
ok("stress: 2000 random operations (seed 5)" in out and " 0 mismatches" in out
   and "stress: everything given back" in out and "stress: PASS" in out,
   "stress on the kernel's own instance verifies contents, gives everything back, passes", out)

out = send("slabinfo\r")
heap = re.search(r"^Heap: held .*, ([0-9]+) allocs, ([0-9]+) frees", out, re.M)
# stress used the kernel heap and gave every block back.
ok(heap and "Slab caches (slabinfo)" in out and int(heap[1]) > 0 and heap[1] == heap[2],
   "slabinfo shows the kernel heap: stress's allocations, each one freed", out)

out = send("check\r")
ok(re.search(r"^check: kmm_check ok \([0-9]+ frame descriptors", out, re.M) is not None,
   "check says the kernel's instance is ok with what it walked", out)

# "chekk", two backspaces, "ck": the line entered is "check".
out = send("chekk" + BACKSPACE * 2 + "ck\r")
ok(re.search(r"^check: kmm_check ok", out, re.M) is not None and "unknown command" not in out,
   "a line edited with Backspace runs the edited command", out)

out = send("frobnicate\r")
ok("error: unknown command 'frobnicate'" in out and "kmm_check" not in out,
   "an unknown command is refused with a clear message", out)

out = send("selftest hw\r")
ok(re.search(r"^selftest: PASS \(0 failed\)", out, re.M) is not None
   and re.search(r"^ok [0-9]+ ", out, re.M) is not None,
   "selftest runs the in-kernel hardware checks (KTAP) and passes", out)

out = send("check\r")
ok(re.search(r"^check: kmm_check ok", out, re.M) is not None,
   "the instance still checks ok after selftest gave its arena back", out)

try:
    qemu.stdin.write(b"halt\r")
    qemu.stdin.flush()
except BrokenPipeError:
    pass
try:
    rc = qemu.wait(timeout=max(1.0, min(TIMEOUT, deadline_all - time.monotonic())))
except subprocess.TimeoutExpired:
    rc = None
rest = qemu.stdout.read() if rc is not None else b""
log.write(rest)
ok(rc == EXIT_PASS and b"halting" in buf + rest,
   f"halt says so and leaves QEMU with the success code (exit {rc}, expected {EXIT_PASS})",
   (buf + rest).decode("latin-1"))
finish()
