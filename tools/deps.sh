#!/usr/bin/env bash
# tools/deps.sh - install the Debian packages kmm's build and tests need, if
# any are missing. Safe to run again: it does nothing when all are present.
set -euo pipefail

packages=(
    make gcc clang lld binutils      # the two compilers, ld and objcopy
    libclang-rt-dev                  # clang's sanitizer and libFuzzer runtimes
    clang-format clang-tidy cppcheck # lint
    perl                             # prove
    pkg-config                       # the README example builds against `make install`
    valgrind                         # make bench: instructions per op (callgrind)
    libjemalloc-dev libmimalloc-dev  # make bench: the heap's peers (H1, H2)
    qemu-system-x86                  # boots the kernel image under TCG
    grub-pc-bin grub-common xorriso mtools # the demo kernel's GRUB ISO
    grub-efi-amd64-bin ovmf          # the same ISO booted on UEFI firmware (make test)
    git
    python3 sqlite3 xz-utils jq      # real programs on the preloadable malloc (tests/malloc/programs.t)
    python3-matplotlib               # tools/mempicture.py: pictures of a dump (make demo, tools/dump-test.t)
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
