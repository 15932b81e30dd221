#!/usr/bin/env bash
# tools/check-layers.sh - the layering of src/ (docs/architecture.md,
# "Layers"), checked on every include; run by `make lint`.
#
#   heap -> vmm -> pmm -> lib -> port        (each only through the narrow
#                                             interface of the one below)
#
# A file of a layer may include its own layer's headers, lib/, the instance
# (internal.h) and the one interface header each lower layer offers upwards
# (pmm/api.h, vmm/api.h); diag/ and the top-level files (init.c) may read
# every layer. internal.h holds the instance and may include only lib/ and
# the layers' state headers (the types it embeds). Angle includes are the
# public headers <kmm/...> and the freestanding C headers; the port's glue
# header comes only through <kmm/port.h>. Nothing in src/ names the hosted
# world. Prints each violation; exit status 1 if there is one.
#
# The Boruix interface (compat/) sits on top of the public API, not in src/:
# compat/boruix.c and compat/world.h include only public headers (<kmm/...>,
# <boruix/...>), freestanding C headers and world.h, so the same file serves
# every world; only a world's own file (compat/hosted.c) may reach further.
set -uo pipefail
cd "$(dirname "$0")/.."

freestanding='stdint.h|stddef.h|stdbool.h|stdalign.h|stdarg.h|stdatomic.h|stdnoreturn.h|limits.h'
status=0
bad() {
    echo "check-layers: $1" >&2
    status=1
}

allowed_quoted() { # file, included path -> 0 if the layering allows it
    local file=$1 inc=$2
    case "$inc" in lib/*|internal.h) return 0 ;; esac
    case "$file" in
    src/internal.h) [[ "$inc" == */state.h ]] ;;
    src/lib/*) return 1 ;;
    src/pmm/*) [[ "$inc" == pmm/* ]] ;;
    src/vmm/*) [[ "$inc" == vmm/* || "$inc" == pmm/api.h ]] ;;
    src/heap/*) [[ "$inc" == heap/* || "$inc" == vmm/api.h || "$inc" == pmm/api.h ]] ;;
    src/diag/*|src/*.c) [ -f "src/$inc" ] ;;
    *) return 1 ;;
    esac
}

while IFS= read -r file; do
    while IFS= read -r line; do
        inc=${line#*#include }
        inc=${inc%%[[:space:]]/*}
        case "$inc" in
        \"*\")
            path=${inc//\"/}
            allowed_quoted "$file" "$path" || bad "$file includes \"$path\", across the layering"
            ;;
        \<*\>)
            path=${inc#<}
            path=${path%>}
            [[ "$path" =~ ^($freestanding)$ || "$path" == kmm/*.h ]] ||
                bad "$file includes <$path>: only <kmm/...> and freestanding C headers"
            ;;
        *) bad "$file: an include this check cannot read: $line" ;;
        esac
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include' "$file")
    if grep -qi 'hosted' "$file"; then
        bad "$file names the hosted world: $(grep -ni 'hosted' "$file" | head -1)"
    fi
done < <(find src -name '*.[ch]' | sort)
while IFS= read -r file; do
    while IFS= read -r line; do
        inc=${line#*#include }
        inc=${inc%%[[:space:]]/*}
        case "$inc" in
        \"world.h\") ;;
        \<*\>)
            path=${inc#<}
            path=${path%>}
            [[ "$path" =~ ^($freestanding)$ || "$path" == kmm/*.h || "$path" == boruix/*.h ]] ||
                bad "$file includes <$path>: compat/ is on top of the public headers"
            ;;
        *) bad "$file includes $inc: compat/ is on top of the public headers" ;;
        esac
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include' "$file")
done < <(find compat -name '*.[ch]' ! -name hosted.c | sort)
exit $status
