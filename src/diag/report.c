/*
 * report.c - the human-readable report (kmm_report).
 *
 * Each layer contributes one section. Text is formatted into a small buffer
 * and handed to the sink a line at a time, so a report needs no allocation
 * and works in any context where the sink does.
 *
 * Lock order (docs/architecture.md, "Lock order"): 0 space list lock -> 1
 * each user space's lock (kmm_vm_stats) while the list is walked. Every
 * other section takes one lock at a time through the layers' stats calls.
 */
#include "internal.h"

#include "heap/debug.h"

#include "pmm/api.h"

#include "lib/misuse.h"

#include <kmm/events.h>
#include <kmm/fmt.h>
#include <kmm/heap.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "vmm/kva.h"

#define sink_printf kmm_sink_printf

/* "1023.9 MiB": bytes in the largest unit that keeps the number >= 1, with
 * one decimal (truncated, so the figure never overstates). */
static void format_size(char *buf, size_t size, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    unsigned u = 0;
    uint64_t scale = 1;
    while (u + 1 < sizeof(units) / sizeof(units[0]) && bytes / scale >= 1024) {
        scale *= 1024;
        u++;
    }
    uint64_t whole = bytes / scale;
    uint64_t tenth = (bytes % scale) * 10 / scale;
    if (u == 0)
        kmm_snprintf(buf, size, "%llu B", (unsigned long long)whole);
    else
        kmm_snprintf(buf, size, "%llu.%llu %s", (unsigned long long)whole,
                     (unsigned long long)tenth, units[u]);
}

static void report_memmap(const struct kmm *k, const struct kmm_sink *s)
{
    char sz[32];
    sink_printf(s, "Physical memory map (%zu ranges)\n", k->map_count);
    for (size_t i = 0; i < k->map_count; i++) {
        const struct kmm_region *r = &k->map[i];
        format_size(sz, sizeof(sz), r->length);
        sink_printf(s, "  [0x%016llx-0x%016llx] %-22s %12s\n", (unsigned long long)r->base,
                    (unsigned long long)(r->base + r->length - 1), kmm_mem_type_name(r->type), sz);
    }
    sink_printf(s, "Totals by type\n");
    for (uint32_t t = 1; t < KMM_MEM_TYPE_LIMIT; t++) {
        if (!k->totals.bytes[t])
            continue;
        format_size(sz, sizeof(sz), k->totals.bytes[t]);
        sink_printf(s, "  %-22s %12s\n", kmm_mem_type_name(t), sz);
    }
    format_size(sz, sizeof(sz), k->totals.phys_end);
    sink_printf(s, "  usable pages %llu, highest address %s, kmm metadata %llu KiB at 0x%llx\n",
                (unsigned long long)k->totals.usable_pages, sz,
                (unsigned long long)(k->meta_size >> 10), (unsigned long long)k->meta_base);
}

/* Like /proc/meminfo: where the pages are. */
static void report_meminfo(const struct kmm_page_stats *ps, const struct kmm_sink *s)
{
    char a[32], b[32], c[32];
    sink_printf(s, "Page allocator\n");
    format_size(a, sizeof(a), ps->managed_pages << KMM_PAGE_SHIFT);
    format_size(b, sizeof(b), ps->free_pages << KMM_PAGE_SHIFT);
    format_size(c, sizeof(c), ps->allocated_pages << KMM_PAGE_SHIFT);
    sink_printf(s, "  managed %s, free %s, allocated %s\n", a, b, c);
    if (ps->deferred_pages) { /* descriptors not written yet (kmm_page_init_deferred) */
        format_size(a, sizeof(a), ps->deferred_pages << KMM_PAGE_SHIFT);
        sink_printf(s, "  deferred %s (usable, initialised when needed)\n", a);
    }
    format_size(a, sizeof(a), ps->metadata_pages << KMM_PAGE_SHIFT);
    format_size(b, sizeof(b), ps->frame_db_bytes);
    sink_printf(s, "  kmm metadata %s (frame database %s, 16 bytes per page)\n", a, b);
    uint64_t misuse = 0;
    for (unsigned i = 0; i < KMM_MISUSE_COUNT; i++)
        misuse += ps->misuse[i];
    sink_printf(s, "  failed allocations %llu, rejected misuse %llu\n",
                (unsigned long long)ps->failed_allocs, (unsigned long long)misuse);
}

/* Like /proc/buddyinfo, with the unusable free space index per order. */
static void report_buddyinfo(const struct kmm_page_stats *ps, const struct kmm_sink *s)
{
    sink_printf(s, "Free blocks per order (buddyinfo)\n  %-7s", "zone");
    for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
        sink_printf(s, " %6u", o);
    sink_printf(s, "\n");
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        const struct kmm_zone_stats *zs = &ps->zones[z];
        if (!zs->managed_pages)
            continue;
        sink_printf(s, "  %-7s", kmm_zone_name(z));
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            sink_printf(s, " %6llu", (unsigned long long)zs->free_blocks[o]);
        sink_printf(s, "\n  %-7s", "unusbl");
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++) {
            unsigned u = kmm_unusable_index(zs, o);
            sink_printf(s, "  %u.%03u", u / 1000, u % 1000);
        }
        sink_printf(s, "\n");
    }
}

/* The shrinkers and what they gave back; then, on a NUMA machine, one line
 * per node (like numastat). */
static void report_reclaim_numa(struct kmm *k, const struct kmm_page_stats *ps,
                                const struct kmm_sink *s)
{
    sink_printf(s, "Reclaim: %llu shrinkers, %llu reclaim calls, %llu shrinker calls, %llu pages\n",
                (unsigned long long)ps->shrinkers, (unsigned long long)ps->reclaim_calls,
                (unsigned long long)ps->shrinker_calls, (unsigned long long)ps->reclaimed_pages);
    struct pmm_shrinker_info info = {0};
    while (pmm_shrinker_info(&k->pmm, info.seq, &info))
        sink_printf(s, "  shrinker \"%s\": %llu calls, %llu pages\n", info.name,
                    (unsigned long long)info.calls, (unsigned long long)info.freed);
    unsigned nodes = kmm_page_node_count(k);
    if (nodes < 2)
        return;
    sink_printf(s, "NUMA nodes (%u)\n", nodes);
    for (unsigned n = 0; n < nodes; n++) {
        struct kmm_node_stats ns;
        char a[32], b[32];
        kmm_page_node_stats(k, n, &ns);
        format_size(a, sizeof(a), ns.managed_pages << KMM_PAGE_SHIFT);
        format_size(b, sizeof(b), ns.free_pages << KMM_PAGE_SHIFT);
        sink_printf(s,
                    "  node %u: %llu CPUs, managed %s, free %s; allocations local %llu, "
                    "remote %llu, lent %llu\n",
                    n, (unsigned long long)ns.cpus, a, b, (unsigned long long)ns.alloc_local,
                    (unsigned long long)ns.alloc_remote, (unsigned long long)ns.alloc_lent);
    }
}

/* The page tables: the kernel space's figures and how many user spaces
 * exist and what their tables take. */
static void report_page_tables(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_vm_stats ks;
    kmm_vm_stats(kmm_kernel_aspace(k), &ks);
    unsigned levels = k->vm.levels;
    sink_printf(s,
                "Page tables (%u levels)\n  kernel space: mapped 4K %llu (%llu owned), 2M %llu, "
                "1G %llu; tables",
                levels, (unsigned long long)ks.mapped_pages, (unsigned long long)ks.owned_pages,
                (unsigned long long)ks.mapped_2m, (unsigned long long)ks.mapped_1g);
    for (unsigned l = levels; l >= 1; l--)
        sink_printf(s, " L%u %llu", l, (unsigned long long)ks.tables[l]);
    char sz[32];
    format_size(sz, sizeof(sz), ks.table_bytes);
    sink_printf(s, ", %s\n", sz);
    uint64_t spaces = 0, mapped[3] = {0, 0, 0}, bytes = 0;
    struct kmm_vm_fault_stats fs, sum;
    kmm_vm_fault_stats(kmm_kernel_aspace(k), &sum);
    kmm_irqstate_t irq = kmm_lock_irqsave(&k->vm.list_lock);
    for (struct kmm_aspace *as = k->vm.spaces; as; as = as->next) {
        struct kmm_vm_stats us;
        kmm_vm_stats(as, &us);
        spaces++;
        mapped[0] += us.mapped_pages;
        mapped[1] += us.mapped_2m;
        mapped[2] += us.mapped_1g;
        bytes += us.table_bytes;
        kmm_vm_fault_stats(as, &fs);
        sum.cow_pages += fs.cow_pages;
        sum.demand_pages += fs.demand_pages;
        sum.demand_zero += fs.demand_zero;
        sum.cow_copy += fs.cow_copy;
        sum.cow_reuse += fs.cow_reuse;
        sum.spurious += fs.spurious;
        sum.refused += fs.refused;
        sum.clones += fs.clones;
    }
    kmm_unlock_irqrestore(&k->vm.list_lock, irq);
    format_size(sz, sizeof(sz), bytes);
    sink_printf(s, "  user spaces: %llu, mapped 4K %llu, 2M %llu, 1G %llu; tables %s\n",
                (unsigned long long)spaces, (unsigned long long)mapped[0],
                (unsigned long long)mapped[1], (unsigned long long)mapped[2], sz);
    sink_printf(s,
                "  every space: copy-on-write pages %llu, demand-zero pages %llu, clones %llu; "
                "faults resolved: demand-zero %llu, cow copy %llu, cow reuse %llu, spurious "
                "%llu; refused %llu\n",
                (unsigned long long)sum.cow_pages, (unsigned long long)sum.demand_pages,
                (unsigned long long)sum.clones, (unsigned long long)sum.demand_zero,
                (unsigned long long)sum.cow_copy, (unsigned long long)sum.cow_reuse,
                (unsigned long long)sum.spurious, (unsigned long long)sum.refused);
    sink_printf(s, "  rejected misuse %llu\n", (unsigned long long)ks.misuse);
}

/* The most areas the report lists one by one (/proc/vmallocinfo lists all). */
#define REPORT_AREAS 16

/* Kernel virtual areas: the window's totals (VmallocTotal, VmallocUsed,
 * VmallocChunk), then the first areas as /proc/vmallocinfo shows them. */
static void report_vmalloc(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(k, &vs);
    char a[32], b[32], c[32];
    format_size(a, sizeof(a), vs.window_size);
    sink_printf(s, "Kernel virtual areas: window [0x%016llx-0x%016llx] %s\n",
                (unsigned long long)vs.window_base,
                (unsigned long long)(vs.window_base + vs.window_size - 1), a);
    format_size(a, sizeof(a), vs.used_pages << KMM_PAGE_SHIFT);
    format_size(b, sizeof(b), vs.largest_free_pages << KMM_PAGE_SHIFT);
    format_size(c, sizeof(c), vs.foreign_pages << KMM_PAGE_SHIFT);
    sink_printf(s,
                "  areas %llu (vmalloc %llu, vmap %llu, raw %llu), used %s with guard pages, "
                "largest free %s, mapped by others %s\n",
                (unsigned long long)vs.areas, (unsigned long long)vs.vmalloc_areas,
                (unsigned long long)vs.vmap_areas, (unsigned long long)vs.raw_areas, a, b, c);
    format_size(a, sizeof(a), vs.vmalloc_pages << KMM_PAGE_SHIFT);
    sink_printf(s,
                "  vmalloc pages %llu (%s), vmap pages %llu, record pages %llu; failed %llu, "
                "rejected misuse %llu\n",
                (unsigned long long)vs.vmalloc_pages, a, (unsigned long long)vs.vmap_pages,
                (unsigned long long)vs.metadata_pages, (unsigned long long)vs.failed_allocs,
                (unsigned long long)vs.misuse);
    struct kmm_kva_park_stats park;
    kmm_kva_park_stats(k, &park);
    if (park.areas) /* freed areas kept for reuse, with their page tables */
        sink_printf(s, "  parked (freed, kept for reuse) %llu areas, %llu pages\n",
                    (unsigned long long)park.areas, (unsigned long long)park.pages);
    if (vs.vmap_blocks) /* kmm_vm_map_ram's, counted among the areas above */
        sink_printf(s,
                    "  vmap blocks %llu: %llu ranges mapping %llu pages, %llu block pages free\n",
                    (unsigned long long)vs.vmap_blocks, (unsigned long long)vs.map_ram_ranges,
                    (unsigned long long)vs.map_ram_pages, (unsigned long long)vs.vmap_block_free);
    struct kmm_kva_area area;
    uint64_t from = vs.window_base, listed = 0;
    while (listed < REPORT_AREAS && kva_next_area(k, &from, &area)) {
        uint64_t end = area.va + area.size;
        sink_printf(s, "  0x%016llx-0x%016llx %10llu %-7s pages=%llu caller %p\n",
                    (unsigned long long)area.va, (unsigned long long)end,
                    (unsigned long long)area.size, kva_kind_name(area.kind),
                    (unsigned long long)(area.size >> KMM_PAGE_SHIFT), area.caller);
        listed++;
    }
    if (vs.areas > listed)
        sink_printf(s, "  ... %llu more areas\n", (unsigned long long)(vs.areas - listed));
}

/* Rejected calls: the misuse table's non-zero cells, by layer and class. */
/* The heap: totals, then one line per cache as /proc/slabinfo has them. */
static void report_heap(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_heap_stats hs;
    kmm_heap_stats(k, &hs);
    char held[16], peak[16], used[16];
    format_size(held, sizeof(held), hs.bytes_held);
    format_size(peak, sizeof(peak), hs.bytes_peak);
    format_size(used, sizeof(used), hs.bytes_used);
    sink_printf(s,
                "Heap: held %s (peak %s), used %s, %llu allocs, %llu frees, %llu failed, "
                "%llu large blocks, %u caches\n",
                held, peak, used, (unsigned long long)hs.allocs, (unsigned long long)hs.frees,
                (unsigned long long)hs.failed, (unsigned long long)hs.large_blocks, hs.caches);
    if (!hs.caches)
        return;
    sink_printf(s, "Slab caches (slabinfo)\n  %-23s %10s %10s %7s %8s %5s %9s %9s %8s %8s\n",
                "name", "active", "total", "objsize", "objslab", "pages", "act_slabs", "slabs",
                "cpu", "lent");
    struct kmm_cache *c;
    for (unsigned i = 0; (c = kmm_heap_cache_at(k, i)) != NULL; i++) {
        struct kmm_cache_stats cs;
        if (kmm_cache_stats(k, c, &cs) != KMM_OK || !cs.total_slabs)
            continue;
        sink_printf(s, "  %-23s %10llu %10llu %7u %8u %5u %9llu %9llu %8llu %8llu\n", cs.name,
                    (unsigned long long)cs.active_objects, (unsigned long long)cs.total_objects,
                    cs.object_size, cs.objects_per_slab, cs.pages_per_slab,
                    (unsigned long long)cs.active_slabs, (unsigned long long)cs.total_slabs,
                    (unsigned long long)cs.cpu_cached, (unsigned long long)cs.lent);
    }
}

static void report_misuse(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_misuse_stats ms;
    kmm_misuse_stats(k, &ms);
    sink_printf(s, "Rejected calls (misuse): %llu\n", (unsigned long long)ms.total);
    for (unsigned l = 0; l < KMM_LAYER_COUNT; l++) {
        if (!ms.layer_total[l])
            continue;
        sink_printf(s, "  %-8s %llu:", kmm_layer_name(l), (unsigned long long)ms.layer_total[l]);
        for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++)
            if (ms.count[l][m])
                sink_printf(s, " %s %llu", kmm_misuse_name(m), (unsigned long long)ms.count[l][m]);
        sink_printf(s, "\n");
    }
}

/* Like /proc/zoneinfo, in short: each zone's range and figures. */
static void report_zoneinfo(const struct kmm_page_stats *ps, const struct kmm_sink *s)
{
    static const char *const range[KMM_ZONE_COUNT] = {"0-16M", "16M-4G", "4G-"};
    sink_printf(s,
                "Zones (zoneinfo; pages of 4 KiB, calls since init)\n  %-7s %-7s %10s %10s %8s "
                "%10s %12s %12s\n",
                "zone", "range", "managed", "free", "pcp", "deferred", "alloc_calls", "free_calls");
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        const struct kmm_zone_stats *zs = &ps->zones[z];
        sink_printf(s, "  %-7s %-7s %10llu %10llu %8llu %10llu %12llu %12llu\n", kmm_zone_name(z),
                    range[z], (unsigned long long)zs->managed_pages,
                    (unsigned long long)zs->free_pages, (unsigned long long)zs->pcp_pages,
                    (unsigned long long)zs->deferred_pages, (unsigned long long)zs->alloc_calls,
                    (unsigned long long)zs->free_calls);
    }
}

/* Events the report lists, the latest. */
#define REPORT_EVENTS 16u

/* The ring's sources as words: "page,heap", "off". */
static void event_sources(char *buf, size_t size, unsigned flags)
{
    kmm_snprintf(buf, size, "%s%s%s", (flags & KMM_EVENTS_PAGE) ? "page" : "",
                 (flags & KMM_EVENTS_PAGE) && (flags & KMM_EVENTS_HEAP) ? "," : "",
                 (flags & KMM_EVENTS_HEAP) ? "heap" : "");
    if (!flags)
        kmm_snprintf(buf, size, "off");
}

/* The latest events of the ring, oldest first: sequence, operation,
 * address, bytes, the order and zone (pages) or cache (heap), CPU, caller. */
static void report_events(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_events_stats es;
    kmm_events_stats(k, &es);
    char src[16];
    event_sources(src, sizeof(src), es.flags);
    sink_printf(s, "Recent events (%llu recorded, %llu kept; sources %s)\n",
                (unsigned long long)es.recorded, (unsigned long long)es.kept, src);
    struct kmm_event ev[REPORT_EVENTS];
    size_t n = kmm_events(k, ev, REPORT_EVENTS);
    for (size_t i = 0; i < n; i++) {
        const struct kmm_event *e = &ev[i];
        char where[40];
        if (e->zone != KMM_EVENT_NONE && e->order != KMM_EVENT_NONE)
            kmm_snprintf(where, sizeof(where), "order %u %s", e->order, kmm_zone_name(e->zone));
        else if (e->zone != KMM_EVENT_NONE)
            kmm_snprintf(where, sizeof(where), "run %s", kmm_zone_name(e->zone));
        else
            kmm_snprintf(where, sizeof(where), "%s", e->cache[0] ? e->cache : "-");
        sink_printf(s, "  %8llu %-10s 0x%016llx %10llu %-22s cpu %u caller %p\n",
                    (unsigned long long)e->seq, kmm_event_op_name(e->op),
                    (unsigned long long)e->addr, (unsigned long long)e->size, where, e->cpu,
                    e->caller);
    }
}

/* Sites the report lists, the largest. */
#define REPORT_SITES 10u

/* Top allocation sites: the heap's tracked live objects grouped by the
 * caller that allocated them, most bytes first (kmm_heap_leak_sites since
 * generation 0, the leak report's grouping). */
static void report_sites(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_heap_site site[REPORT_SITES];
    size_t n = kmm_heap_leak_sites(k, 0, site, REPORT_SITES);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    sink_printf(s,
                "Top allocation sites (live tracked heap objects by caller, most bytes first): %zu "
                "sites, %llu objects tracked%s\n",
                n, (unsigned long long)ds.tracked,
                (ds.flags & KMM_HEAP_DEBUG_TRACK) || ds.tracked
                    ? ""
                    : " (tracking is off: kmm_heap_debug(KMM_HEAP_DEBUG_TRACK))");
    for (size_t i = 0; i < n && i < REPORT_SITES; i++) {
        if (site[i].caller)
            sink_printf(s, "  %-18p %10llu objects %12llu bytes\n", site[i].caller,
                        (unsigned long long)site[i].objects, (unsigned long long)site[i].bytes);
        else
            sink_printf(s, "  %-18s %10llu objects %12llu bytes\n", "(other sites)",
                        (unsigned long long)site[i].objects, (unsigned long long)site[i].bytes);
    }
    if (n > REPORT_SITES)
        sink_printf(s, "  ... %zu more sites\n", n - REPORT_SITES);
}

/* Whether k is a live instance; if not, one line says so (nothing else of
 * it can be read). */
static bool report_live(const struct kmm *k, const struct kmm_sink *sink, const char *who)
{
    if (k->canary == KMM_INSTANCE_CANARY)
        return true;
    sink_printf(sink, "%s: not a live instance (canary 0x%llx)\n", who,
                (unsigned long long)k->canary);
    return false;
}

/* Writes section `section` (< KMM_REPORT_SECTIONS); *ps holds the page
 * figures for the sections that read them, filled by the caller. */
static void report_one(struct kmm *k, unsigned section, const struct kmm_page_stats *ps,
                       const struct kmm_sink *sink)
{
    switch (section) {
    case KMM_REPORT_MEMMAP:
        report_memmap(k, sink);
        break;
    case KMM_REPORT_MEMINFO:
        report_meminfo(ps, sink);
        break;
    case KMM_REPORT_BUDDYINFO:
        report_buddyinfo(ps, sink);
        break;
    case KMM_REPORT_RECLAIM:
        report_reclaim_numa(k, ps, sink);
        break;
    case KMM_REPORT_PAGETABLES:
        report_page_tables(k, sink);
        break;
    case KMM_REPORT_VMALLOC:
        report_vmalloc(k, sink);
        break;
    case KMM_REPORT_HEAP:
        report_heap(k, sink);
        break;
    case KMM_REPORT_HEAP_DEBUG:
        heap_debug_report_section(k, sink);
        break;
    case KMM_REPORT_MISUSE:
        report_misuse(k, sink);
        break;
    case KMM_REPORT_ZONEINFO:
        report_zoneinfo(ps, sink);
        break;
    case KMM_REPORT_EVENTS:
        report_events(k, sink);
        break;
    default: /* KMM_REPORT_SITES; the callers checked the range */
        report_sites(k, sink);
        break;
    }
}

/* Whether a section reads the page allocator's figures. */
static bool section_needs_page_stats(unsigned section)
{
    return section == KMM_REPORT_MEMINFO || section == KMM_REPORT_BUDDYINFO ||
           section == KMM_REPORT_RECLAIM || section == KMM_REPORT_ZONEINFO;
}

void kmm_report(struct kmm *k, const struct kmm_sink *sink)
{
    if (!report_live(k, sink, "kmm_report"))
        return;
    sink_printf(sink, "kmm %s, %u CPUs\n", kmm_version(), k->cpu_count);
    struct kmm_page_stats ps;
    kmm_page_stats(k, &ps);
    for (unsigned s = 0; s < KMM_REPORT_SECTIONS; s++)
        report_one(k, s, &ps, sink);
}

int kmm_report_section(struct kmm *k, unsigned section, const struct kmm_sink *sink)
{
    if (!report_live(k, sink, "kmm_report_section"))
        return KMM_ESTATE;
    if (section >= KMM_REPORT_SECTIONS)
        return kmm_misuse(
            k, KMM_LAYER_DIAG, KMM_MISUSE_BAD_ARG, KMM_EINVAL, __builtin_return_address(0),
            "kmm_report_section(%u): no such section (0 .. %u)", section, KMM_REPORT_SECTIONS - 1);
    struct kmm_page_stats ps = {0};
    if (section_needs_page_stats(section))
        kmm_page_stats(k, &ps);
    report_one(k, section, &ps, sink);
    return KMM_OK;
}
