/*
 * dump.c - the machine-readable dump (kmm_dump_json; the document is
 * described in kmm/dump.h).
 *
 * Like the report, it formats into a small buffer on the stack and hands
 * the sink one piece at a time, so it needs no memory. The frames are read
 * in batches of at most DUMP_RUN_BATCH runs and one section each, under
 * the locks kmm_check takes, and written out after those are dropped: the
 * sink (a serial line) may be slow, and no lock is held while it runs.
 *
 * Lock order (docs/architecture.md, "Lock order"): 0 space list lock -> 1
 * each user space's lock (as kmm_report); 5 growth lock -> 6 every zone
 * lock in ascending (node, zone) order for a batch of frames. Nothing else
 * is held together.
 */
#include "internal.h"

#include "pmm/pmm.h"

#include "lib/misuse.h"

#include "vmm/kva.h"

#include <kmm/dump.h>
#include <kmm/fmt.h>
#include <kmm/heap.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

/* The longest piece handed to the sink, its NUL included (kmm_sink_printf's). */
#define DUMP_LINE 160

/* Runs read under one hold of the locks (on the stack: 24 bytes each). */
#define DUMP_RUN_BATCH 48

/* A dump state beyond enum frame_state: a section whose descriptors are
 * not written yet (kmm/dump.h, "deferred"). */
#define DUMP_STATE_DEFERRED (FRAME_SLAB + 1)

static const char *const state_names[] = {
    [FRAME_ABSENT] = "absent",
    [FRAME_RESERVED] = "reserved",
    [FRAME_FREE] = "free",
    [FRAME_INTERIOR] = "interior",
    [FRAME_ALLOCATED] = "allocated",
    [FRAME_PCP] = "pcp",
    [FRAME_PAGETABLE] = "pagetable",
    [FRAME_SLAB] = "slab",
    [DUMP_STATE_DEFERRED] = "deferred",
};

static const char *state_name(unsigned s)
{
    return s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "unknown";
}

/* The writer: the sink, and whether the next item of the current list is
 * its first (no separator before it). */
struct dump {
    const struct kmm_sink *sink;
    bool first;
};

static void put(struct dump *d, const char *text)
{
    size_t n = 0;
    while (text[n])
        n++;
    d->sink->write(d->sink->ctx, text, n);
}

static void __attribute__((format(printf, 2, 3))) putf(struct dump *d, const char *fmt, ...)
{
    char line[DUMP_LINE];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= sizeof(line)) /* every format here fits; a cut piece would break the JSON */
        n = sizeof(line) - 1;
    d->sink->write(d->sink->ctx, line, n);
}

/* Starts a list ("key": [ ) and the items in it: each item() writes the
 * separator its position needs. */
static void list_begin(struct dump *d, const char *key)
{
    putf(d, ",\n  \"%s\": [", key);
    d->first = true;
}

static void item(struct dump *d)
{
    put(d, d->first ? "\n    " : ",\n    ");
    d->first = false;
}

static void list_end(struct dump *d)
{
    put(d, d->first ? "]" : "\n  ]");
}

/* Copies s into out as the inside of a JSON string: quote and backslash
 * escaped, control characters replaced by '?'. Truncates to fit. */
static void json_text(char *out, size_t size, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < size; s++) {
        char c = *s;
        if (c == '"' || c == '\\')
            out[o++] = '\\';
        out[o++] = (unsigned char)c < 0x20 ? '?' : c;
    }
    out[o] = 0;
}

static void u64_array(struct dump *d, const uint64_t *v, unsigned n)
{
    put(d, "[");
    for (unsigned i = 0; i < n; i++)
        putf(d, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
    put(d, "]");
}

/* --- memory map and zones --------------------------------------------------------- */

static void dump_memmap(struct kmm *k, struct dump *d)
{
    list_begin(d, "memmap");
    for (size_t i = 0;; i++) {
        /* One range at a time under the growth lock, which guards the map
         * after init (kmm_page_add_memory), the sink called without it. */
        kmm_irqstate_t irq = kmm_lock_irqsave(&k->pmm.grow.lock);
        bool more = i < k->map_count;
        struct kmm_region r = more ? k->map[i] : (struct kmm_region){0};
        kmm_unlock_irqrestore(&k->pmm.grow.lock, irq);
        if (!more)
            break;
        item(d);
        putf(d, "{\"base\": %llu, \"length\": %llu, \"type\": \"%s\"}", (unsigned long long)r.base,
             (unsigned long long)r.length, kmm_mem_type_name(r.type));
    }
    list_end(d);
}

static const uint64_t zone_start[KMM_ZONE_COUNT] = {0, KMM_ZONE_DMA_END, KMM_ZONE_DMA32_END};
static const uint64_t zone_end[KMM_ZONE_COUNT] = {KMM_ZONE_DMA_END, KMM_ZONE_DMA32_END, UINT64_MAX};

static void dump_zones(struct kmm *k, struct dump *d)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t top = pm->pfn_end << KMM_PAGE_SHIFT;
    list_begin(d, "zones");
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            kmm_irqstate_t irq = kmm_lock_irqsave(&pm->grow.lock);
            uint64_t deferred = pm->grow.deferred[n][z];
            kmm_unlock_irqrestore(&pm->grow.lock, irq);
            struct kmm_zone_stats zs = {0};
            pmm_zone_stats_add(k, n, z, &zs);
            if (!zs.managed_pages && !deferred)
                continue;
            uint64_t end = zone_end[z] < top ? zone_end[z] : top;
            item(d);
            putf(d, "{\"zone\": \"%s\", \"node\": %u, \"start\": %llu, \"end\": %llu, ",
                 kmm_zone_name(z), n, (unsigned long long)zone_start[z], (unsigned long long)end);
            putf(d, "\"managed\": %llu, \"free\": %llu, \"pcp\": %llu, \"deferred\": %llu, ",
                 (unsigned long long)zs.managed_pages, (unsigned long long)zs.free_pages,
                 (unsigned long long)zs.pcp_pages, (unsigned long long)deferred);
            putf(d, "\"alloc_calls\": %llu, \"free_calls\": %llu,\n     \"free_blocks\": ",
                 (unsigned long long)zs.alloc_calls, (unsigned long long)zs.free_calls);
            u64_array(d, zs.free_blocks, KMM_PAGE_ORDERS);
            put(d, "}");
        }
    }
    list_end(d);
}

/* --- frames ------------------------------------------------------------------------ */

struct dump_run {
    uint64_t pfn, count;
    uint8_t state, zone, node, order;
};

/* The frame walk: the next frame to read, the run being extended, and the
 * runs closed since the last batch was written. */
struct frame_walk {
    uint64_t pfn;
    struct dump_run open; /* count 0: none yet */
    unsigned closed;
    struct dump_run out[DUMP_RUN_BATCH];
};

/* Adds `count` frames from pfn (the walk's next frames) to the open run if
 * they continue it, else closes it and opens another. */
static void walk_add(struct frame_walk *w, uint64_t pfn, uint64_t count, unsigned state,
                     unsigned zone, unsigned node, unsigned order)
{
    struct dump_run *o = &w->open;
    if (o->count && o->state == state && o->zone == zone && o->node == node && o->order == order &&
        o->pfn + o->count == pfn) {
        o->count += count;
        return;
    }
    if (o->count)
        w->out[w->closed++] = *o;
    *o =
        (struct dump_run){pfn, count, (uint8_t)state, (uint8_t)zone, (uint8_t)node, (uint8_t)order};
}

/* Frames with no descriptor to read, [pfn, end): absent or deferred. An
 * absent stretch is split at the zone boundaries, its zone the address's. */
static void walk_undescribed(struct frame_walk *w, const struct pmm_section *sec, uint64_t end)
{
    if (sec->state == PMM_SECTION_DEFERRED) {
        walk_add(w, w->pfn, end - w->pfn, DUMP_STATE_DEFERRED, sec->zone, sec->node, 0);
        w->pfn = end;
        return;
    }
    while (w->pfn < end) {
        unsigned z = pmm_zone_of_addr(w->pfn << KMM_PAGE_SHIFT);
        uint64_t zend = zone_end[z] >> KMM_PAGE_SHIFT; /* UINT64_MAX >> 12 for Normal */
        uint64_t stop = zend < end ? zend : end;
        walk_add(w, w->pfn, stop - w->pfn, FRAME_ABSENT, z, 0, 0);
        w->pfn = stop;
    }
}

/* Reads frames of one section from w->pfn up to end (the section's end or
 * pfn_end) until the batch is full: a block's head and its interior frames
 * count as one step. The growth lock and every zone lock held. */
static void walk_section_locked(struct kmm_pmm *pm, struct frame_walk *w, uint64_t end)
{
    while (w->pfn < end && w->closed < DUMP_RUN_BATCH) {
        uint64_t pfn = w->pfn;
        union frame_meta m = frame_meta_get(pmm_frame(pm, pfn));
        uint64_t size = 1;
        unsigned order = 0, zone = m.zone, node = m.node;
        if (m.state == FRAME_FREE || m.state == FRAME_ALLOCATED || m.state == FRAME_SLAB) {
            uint64_t want = UINT64_C(1) << (m.order <= KMM_PAGE_MAX_ORDER ? m.order : 0);
            /* A misplaced block (kmm_check reports it) counts as one frame. */
            if (m.order <= KMM_PAGE_MAX_ORDER && !(pfn & (want - 1)) && pfn + want <= end) {
                size = want;
                order = m.order;
            }
        } else if (m.state == FRAME_ABSENT) {
            zone = pmm_zone_of_addr(pfn << KMM_PAGE_SHIFT);
            node = 0;
        }
        walk_add(w, pfn, size, m.state, zone, node, order);
        w->pfn = pfn + size;
    }
}

/* One batch of the walk, under the growth lock (no section changes state)
 * and every zone lock in ascending (node, zone) order, as kmm_check. */
static void walk_batch(struct kmm_pmm *pm, struct frame_walk *w)
{
    kmm_irqstate_t saved[KMM_MAX_NODES][KMM_ZONE_COUNT];
    kmm_irqstate_t grow = kmm_lock_irqsave(&pm->grow.lock);
    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
            saved[n][z] = kmm_lock_irqsave(&pm->zones[n][z].lock);

    uint64_t s = w->pfn >> KMM_SECTION_SHIFT;
    uint64_t end = (s + 1) << KMM_SECTION_SHIFT;
    if (end > pm->pfn_end)
        end = pm->pfn_end;
    if (pm->sections[s])
        walk_section_locked(pm, w, end);
    else
        walk_undescribed(w, &pm->grow.sections[s], end);

    for (unsigned n = pm->node_count; n-- > 0;)
        for (unsigned z = KMM_ZONE_COUNT; z-- > 0;)
            kmm_unlock_irqrestore(&pm->zones[n][z].lock, saved[n][z]);
    kmm_unlock_irqrestore(&pm->grow.lock, grow);
}

static void put_run(struct dump *d, const struct dump_run *r)
{
    item(d);
    putf(d,
         "{\"pfn\": %llu, \"count\": %llu, \"state\": \"%s\", \"zone\": \"%s\", \"node\": %u, "
         "\"order\": %u}",
         (unsigned long long)r->pfn, (unsigned long long)r->count, state_name(r->state),
         kmm_zone_name(r->zone), r->node, r->order);
}

static void dump_frames(struct kmm *k, struct dump *d)
{
    struct kmm_pmm *pm = &k->pmm;
    putf(d, ",\n  \"frames\": {\"pfn_end\": %llu, \"runs\": [", (unsigned long long)pm->pfn_end);
    d->first = true;
    struct frame_walk w;
    w.pfn = 0;
    w.open.count = 0;
    w.closed = 0;
    while (w.pfn < pm->pfn_end) {
        walk_batch(pm, &w);
        for (unsigned i = 0; i < w.closed; i++)
            put_run(d, &w.out[i]);
        w.closed = 0;
    }
    if (w.open.count)
        put_run(d, &w.open);
    put(d, d->first ? "]}" : "\n  ]}");
}

/* --- heap, kernel virtual areas, page tables ------------------------------------------ */

static void dump_heap(struct kmm *k, struct dump *d)
{
    struct kmm_heap_stats hs;
    kmm_heap_stats(k, &hs);
    putf(d, ",\n  \"heap\": {\"bytes_held\": %llu, \"bytes_peak\": %llu, \"bytes_used\": %llu, ",
         (unsigned long long)hs.bytes_held, (unsigned long long)hs.bytes_peak,
         (unsigned long long)hs.bytes_used);
    putf(d, "\"allocs\": %llu, \"frees\": %llu, \"failed\": %llu, \"large_blocks\": %llu, ",
         (unsigned long long)hs.allocs, (unsigned long long)hs.frees, (unsigned long long)hs.failed,
         (unsigned long long)hs.large_blocks);
    putf(d, "\"large_bytes\": %llu,\n   \"caches\": [", (unsigned long long)hs.large_bytes);
    d->first = true;
    struct kmm_cache *c;
    for (unsigned i = 0; (c = kmm_heap_cache_at(k, i)) != NULL; i++) {
        struct kmm_cache_stats cs;
        if (kmm_cache_stats(k, c, &cs) != KMM_OK) /* destroyed meanwhile */
            continue;
        char name[2 * KMM_CACHE_NAME_MAX];
        json_text(name, sizeof(name), cs.name);
        item(d);
        putf(d,
             "{\"name\": \"%s\", \"object_size\": %u, \"objects_per_slab\": %u, "
             "\"pages_per_slab\": %u, ",
             name, cs.object_size, cs.objects_per_slab, cs.pages_per_slab);
        putf(d,
             "\"active_objects\": %llu, \"total_objects\": %llu, \"active_slabs\": %llu, "
             "\"total_slabs\": %llu, \"cpu_cached\": %llu, \"lent\": %llu}",
             (unsigned long long)cs.active_objects, (unsigned long long)cs.total_objects,
             (unsigned long long)cs.active_slabs, (unsigned long long)cs.total_slabs,
             (unsigned long long)cs.cpu_cached, (unsigned long long)cs.lent);
    }
    put(d, d->first ? "]}" : "\n  ]}");
}

static void dump_kva(struct kmm *k, struct dump *d)
{
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(k, &vs);
    putf(d, ",\n  \"kva\": {\"base\": %llu, \"size\": %llu, \"areas_count\": %llu, ",
         (unsigned long long)vs.window_base, (unsigned long long)vs.window_size,
         (unsigned long long)vs.areas);
    putf(d, "\"used_pages\": %llu, \"vmalloc_pages\": %llu, \"vmap_pages\": %llu,\n   \"areas\": [",
         (unsigned long long)vs.used_pages, (unsigned long long)vs.vmalloc_pages,
         (unsigned long long)vs.vmap_pages);
    d->first = true;
    struct kmm_kva_area a;
    for (uint64_t from = vs.window_base; kva_next_area(k, &from, &a);) {
        item(d);
        putf(d,
             "{\"va\": %llu, \"size\": %llu, \"kind\": \"%s\", \"pages\": %llu, "
             "\"caller\": \"%p\"}",
             (unsigned long long)a.va, (unsigned long long)a.size, kva_kind_name(a.kind),
             (unsigned long long)(a.size >> KMM_PAGE_SHIFT), a.caller);
    }
    put(d, d->first ? "]}" : "\n  ]}");
}

static void dump_page_tables(struct kmm *k, struct dump *d)
{
    struct kmm_vm_stats ks;
    kmm_vm_stats(kmm_kernel_aspace(k), &ks);
    unsigned levels = k->vm.levels;
    putf(d, ",\n  \"page_tables\": {\"levels\": %u, \"kernel\": {\"mapped_4k\": %llu, ", levels,
         (unsigned long long)ks.mapped_pages);
    putf(d, "\"mapped_2m\": %llu, \"mapped_1g\": %llu, \"owned\": %llu, \"tables\": {",
         (unsigned long long)ks.mapped_2m, (unsigned long long)ks.mapped_1g,
         (unsigned long long)ks.owned_pages);
    for (unsigned l = levels; l >= 1; l--)
        putf(d, "%s\"L%u\": %llu", l == levels ? "" : ", ", l, (unsigned long long)ks.tables[l]);
    putf(d, "}, \"table_bytes\": %llu},\n", (unsigned long long)ks.table_bytes);
    uint64_t spaces = 0, bytes = 0;
    kmm_irqstate_t irq = kmm_lock_irqsave(&k->vm.list_lock);
    for (struct kmm_aspace *as = k->vm.spaces; as; as = as->next) {
        struct kmm_vm_stats us;
        kmm_vm_stats(as, &us);
        spaces++;
        bytes += us.table_bytes;
    }
    kmm_unlock_irqrestore(&k->vm.list_lock, irq);
    putf(d, "   \"user_spaces\": %llu, \"user_table_bytes\": %llu}", (unsigned long long)spaces,
         (unsigned long long)bytes);
}

int kmm_dump_json(struct kmm *k, const struct kmm_sink *sink)
{
    if (!k)
        return KMM_EINVAL;
    if (k->canary != KMM_INSTANCE_CANARY)
        return KMM_ESTATE;
    if (!sink || !sink->write)
        return kmm_misuse(k, KMM_LAYER_DIAG, KMM_MISUSE_BAD_ARG, KMM_EINVAL,
                          __builtin_return_address(0),
                          "kmm_dump_json(sink %p): no sink to write to", (const void *)sink);
    struct dump d = {sink, true};
    putf(&d, "{\"version\": %u, \"kmm\": \"%s\", \"page_size\": %llu, \"cpus\": %u, \"nodes\": %u",
         KMM_DUMP_VERSION, kmm_version(), (unsigned long long)KMM_PAGE_SIZE, k->cpu_count,
         k->pmm.node_count);
    dump_memmap(k, &d);
    dump_zones(k, &d);
    dump_frames(k, &d);
    dump_heap(k, &d);
    dump_kva(k, &d);
    dump_page_tables(k, &d);
    put(&d, "\n}\n");
    return KMM_OK;
}
