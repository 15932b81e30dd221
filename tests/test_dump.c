/*
 * test_dump.c - the machine-readable dump (kmm/dump.h): its numbers are the
 * statistics' (free blocks per order, the CPU caches, every cache's
 * figures), its frame runs cover every frame exactly once, and bad calls
 * are refused. The dump is read "parse-light": one object per line, a
 * field found by its key on that line. (tools/dump-test.t checks it with a
 * real JSON parser.)
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/dump.h>
#include <kmm/heap.h>
#include <kmm/misuse.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)

/* A small PC: low memory below its hole, then 47 MiB, a reserved sliver
 * after it: frames of the DMA and DMA32 zones, absent and reserved ones. */
static const struct kmm_region small_pc[] = {
    {0x0, 0x9f000, KMM_MEM_USABLE},
    {0x9f000, 0x61000, KMM_MEM_RESERVED},
    {1 * MIB, 47 * MIB, KMM_MEM_USABLE},
    {48 * MIB, 1 * MIB, KMM_MEM_RESERVED},
};

/* Room for the dump of the small PC with some work done (a few KiB of
 * runs and caches); a dump that does not fit fails the test. */
struct dump_text {
    char buf[128 * 1024];
    size_t len;
    bool cut;
};

static void dump_write(void *ctx, const char *s, size_t n)
{
    struct dump_text *d = ctx;
    for (size_t i = 0; i < n; i++) {
        if (d->len + 1 >= sizeof(d->buf)) {
            d->cut = true;
            break;
        }
        d->buf[d->len++] = s[i];
    }
    d->buf[d->len] = '\0';
}

static struct dump_text text;

/* Dumps f's instance into `text`; false (the test failed) if it did not fit. */
static bool take_dump(struct ktest *t, struct kt_kmm *f)
{
    text.len = 0;
    text.cut = false;
    text.buf[0] = '\0';
    KT_EXPECT_EQ(t, kmm_dump_json(f->k, &(struct kmm_sink){dump_write, &text}), KMM_OK);
    KT_EXPECT(t, !text.cut);
    return !text.cut && !ktest_failed(t);
}

/* --- parse-light: a key's value on one line ---------------------------------------- */

/* The first occurrence of needle in [s, end) (end NULL: the string's end),
 * or NULL. */
static const char *find_in(const char *s, const char *end, const char *needle)
{
    for (; *s && (!end || s < end); s++) {
        size_t i = 0;
        while (needle[i] && s[i] == needle[i])
            i++;
        if (!needle[i])
            return s;
    }
    return 0;
}

static const char *line_end(const char *s)
{
    while (*s && *s != '\n')
        s++;
    return s;
}

static uint64_t number_at(const char *p)
{
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

/* The value of "key": n on the line holding line (~0 if missing). */
static uint64_t field(const char *line, const char *key)
{
    char pat[48];
    size_t n = 0;
    pat[n++] = '"';
    for (size_t i = 0; key[i] && n + 4 < sizeof(pat); i++)
        pat[n++] = key[i];
    pat[n++] = '"';
    pat[n++] = ':';
    pat[n++] = ' ';
    pat[n] = 0;
    const char *p = find_in(line, line_end(line), pat);
    return p ? number_at(p + n) : ~UINT64_C(0);
}

/* Whether "key": "value" is on the line holding line. */
static bool field_is(const char *line, const char *key, const char *value)
{
    char pat[64];
    size_t n = 0;
    const char *parts[] = {"\"", key, "\": \"", value, "\""};
    for (size_t i = 0; i < N(parts); i++)
        for (size_t j = 0; parts[i][j] && n + 1 < sizeof(pat); j++)
            pat[n++] = parts[i][j];
    pat[n] = 0;
    return find_in(line, line_end(line), pat) != 0;
}

/* The next run line at or after s ("{\"pfn\": "), or NULL. */
static const char *next_run(const char *s)
{
    return find_in(s, 0, "{\"pfn\": ");
}

/* Some work, so that the dump has every kind of frame: blocks of mixed
 * orders with every other one freed (holes), a cache with objects, heap
 * blocks of a few sizes. Returns the cache (destroyed by the caller). */
static struct kmm_cache *some_work(struct ktest *t, struct kmm *k, uint64_t *pa, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        pa[i] = kmm_page_alloc(k, i % 4, i % 3 ? 0 : KMM_GFP_DMA);
    for (unsigned i = 0; i < n; i += 2) {
        kmm_page_free(k, pa[i], i % 4);
        pa[i] = 0;
    }
    struct kmm_cache *c = kmm_cache_create(k, "dump \"test\"", 200, 0, NULL, 0);
    KT_EXPECT(t, c != NULL);
    for (unsigned i = 0; c && i < 50; i++)
        KT_EXPECT(t, kmm_cache_alloc(k, c, 0) != NULL);
    for (unsigned i = 0; i < 40; i++)
        KT_EXPECT(t, kmm_malloc(k, 16u << (i % 8), 0) != NULL);
    return c;
}

static void undo_work(struct kmm *k, struct kmm_cache *c, uint64_t *pa, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (pa[i])
            kmm_page_free(k, pa[i], i % 4);
    (void)c; /* its objects and the heap's blocks go with the instance */
}

#define WORK_BLOCKS 64

/* --- the tests ------------------------------------------------------------------------ */

KTEST(dump, the_runs_cover_every_frame_once_in_ascending_order)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, small_pc, N(small_pc), 1, 0))
        return;
    uint64_t pa[WORK_BLOCKS];
    struct kmm_cache *c = some_work(t, f.k, pa, WORK_BLOCKS);
    if (take_dump(t, &f)) {
        const char *frames = find_in(text.buf, 0, "\"frames\": {\"pfn_end\": ");
        KT_ASSERT(t, frames != NULL);
        uint64_t pfn_end = field(frames, "pfn_end");
        KT_EXPECT_EQ(t, pfn_end, 48 * MIB >> KMM_PAGE_SHIFT);
        uint64_t next = 0, runs = 0;
        bool seen_reserved = false, seen_free = false, seen_allocated = false, seen_slab = false;
        for (const char *r = next_run(frames); r; r = next_run(r + 1)) {
            KT_EXPECT_EQ(t, field(r, "pfn"), next);
            KT_EXPECT(t, field(r, "count") > 0);
            next = field(r, "pfn") + field(r, "count");
            seen_reserved |= field_is(r, "state", "reserved");
            seen_free |= field_is(r, "state", "free");
            seen_allocated |= field_is(r, "state", "allocated");
            seen_slab |= field_is(r, "state", "slab");
            runs++;
        }
        KT_EXPECT_EQ(t, next, pfn_end);
        KT_EXPECT(t, runs > 4);
        KT_EXPECT(t, seen_reserved && seen_free && seen_allocated && seen_slab);
    }
    undo_work(f.k, c, pa, WORK_BLOCKS);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(dump, free_runs_per_order_and_zone_are_the_buddyinfo_and_cached_runs_the_caches)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, small_pc, N(small_pc), 1, 0))
        return;
    uint64_t pa[WORK_BLOCKS];
    struct kmm_cache *c = some_work(t, f.k, pa, WORK_BLOCKS);
    /* A few single pages freed into this CPU's cache: pcp runs. */
    uint64_t single[4];
    for (unsigned i = 0; i < N(single); i++)
        single[i] = kmm_page_alloc(f.k, 0, 0);
    for (unsigned i = 0; i < N(single); i++)
        kmm_page_free(f.k, single[i], 0);
    struct kmm_page_stats ps;
    kmm_page_stats(f.k, &ps);
    if (take_dump(t, &f)) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            const char *name = kmm_zone_name(z);
            uint64_t blocks[KMM_PAGE_ORDERS] = {0}, pcp = 0;
            const char *frames = find_in(text.buf, 0, "\"frames\": ");
            for (const char *r = next_run(frames); r; r = next_run(r + 1)) {
                if (!field_is(r, "zone", name))
                    continue;
                if (field_is(r, "state", "free")) {
                    uint64_t o = field(r, "order");
                    KT_ASSERT(t, o < KMM_PAGE_ORDERS);
                    KT_EXPECT_EQ(t, field(r, "count") % (UINT64_C(1) << o), 0);
                    blocks[o] += field(r, "count") >> o;
                } else if (field_is(r, "state", "pcp")) {
                    pcp += field(r, "count");
                }
            }
            for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
                KT_EXPECT_EQ(t, blocks[o], ps.zones[z].free_blocks[o]);
            KT_EXPECT_EQ(t, pcp, ps.zones[z].pcp_pages);

            /* The zone's own line says the same. */
            char key[32] = "{\"zone\": \"";
            size_t n = 10;
            for (size_t i = 0; name[i]; i++)
                key[n++] = name[i];
            key[n++] = '"';
            key[n] = 0;
            const char *zl = find_in(text.buf, 0, key);
            if (!ps.zones[z].managed_pages) {
                KT_EXPECT(t, zl == NULL);
                continue;
            }
            KT_ASSERT(t, zl != NULL);
            KT_EXPECT_EQ(t, field(zl, "managed"), ps.zones[z].managed_pages);
            KT_EXPECT_EQ(t, field(zl, "free"), ps.zones[z].free_pages);
            KT_EXPECT_EQ(t, field(zl, "pcp"), ps.zones[z].pcp_pages);
            const char *fb = find_in(zl, 0, "\"free_blocks\": [");
            KT_ASSERT(t, fb != NULL);
            fb += 16;
            for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++) {
                KT_EXPECT_EQ(t, number_at(fb), ps.zones[z].free_blocks[o]);
                while (*fb >= '0' && *fb <= '9')
                    fb++;
                while (*fb == ',' || *fb == ' ')
                    fb++;
            }
        }
    }
    undo_work(f.k, c, pa, WORK_BLOCKS);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(dump, each_cache_line_holds_its_kmm_cache_stats)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, small_pc, N(small_pc), 1, 0))
        return;
    uint64_t pa[WORK_BLOCKS];
    struct kmm_cache *mine = some_work(t, f.k, pa, WORK_BLOCKS);
    if (take_dump(t, &f)) {
        /* The name with a quote in it comes out escaped. */
        KT_EXPECT(t, find_in(text.buf, 0, "\"name\": \"dump \\\"test\\\"\"") != NULL);
        struct kmm_cache *c;
        unsigned listed = 0;
        for (unsigned i = 0; (c = kmm_heap_cache_at(f.k, i)) != NULL; i++) {
            struct kmm_cache_stats cs;
            KT_ASSERT_EQ(t, kmm_cache_stats(f.k, c, &cs), KMM_OK);
            /* Lines in the caches' order: the i-th "name" line. */
            const char *l = find_in(text.buf, 0, "\"caches\": [");
            KT_ASSERT(t, l != NULL);
            for (unsigned j = 0; j <= i && l; j++)
                l = find_in(l + 1, 0, "{\"name\": ");
            KT_ASSERT(t, l != NULL);
            KT_EXPECT_EQ(t, field(l, "object_size"), cs.object_size);
            KT_EXPECT_EQ(t, field(l, "objects_per_slab"), cs.objects_per_slab);
            KT_EXPECT_EQ(t, field(l, "pages_per_slab"), cs.pages_per_slab);
            KT_EXPECT_EQ(t, field(l, "active_objects"), cs.active_objects);
            KT_EXPECT_EQ(t, field(l, "total_objects"), cs.total_objects);
            KT_EXPECT_EQ(t, field(l, "active_slabs"), cs.active_slabs);
            KT_EXPECT_EQ(t, field(l, "total_slabs"), cs.total_slabs);
            KT_EXPECT_EQ(t, field(l, "cpu_cached"), cs.cpu_cached);
            KT_EXPECT_EQ(t, field(l, "lent"), cs.lent);
            if (c == mine)
                KT_EXPECT_EQ(t, cs.active_objects, 50);
            listed++;
        }
        KT_EXPECT(t, listed > 1);
        /* No line beyond the listed caches. */
        const char *l = find_in(text.buf, 0, "\"caches\": [");
        unsigned lines = 0;
        while ((l = find_in(l + 1, 0, "{\"name\": ")) != NULL)
            lines++;
        KT_EXPECT_EQ(t, lines, listed);
    }
    undo_work(f.k, mine, pa, WORK_BLOCKS);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(dump, the_document_is_one_balanced_object_with_the_memory_map)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, small_pc, N(small_pc), 1, 0))
        return;
    if (take_dump(t, &f)) {
        KT_EXPECT(t, find_in(text.buf, 0, "{\"version\": 1, ") == text.buf);
        KT_EXPECT_EQ(t, KMM_DUMP_VERSION, 1);
        /* Brackets balance outside strings and close only at the end. */
        int depth = 0;
        bool in_string = false, closed_early = false;
        for (size_t i = 0; i < text.len; i++) {
            char ch = text.buf[i];
            if (in_string) {
                if (ch == '\\')
                    i++;
                else if (ch == '"')
                    in_string = false;
                continue;
            }
            if (ch == '"')
                in_string = true;
            else if (ch == '{' || ch == '[')
                depth++;
            else if (ch == '}' || ch == ']')
                depth--;
            if (depth == 0 && i + 2 < text.len)
                closed_early = true;
        }
        KT_EXPECT_EQ(t, depth, 0);
        KT_EXPECT(t, !in_string && !closed_early);
        KT_EXPECT(t, text.buf[text.len - 1] == '\n');
        /* One memmap line per range of kmm_memory_map, in its order. */
        size_t n;
        const struct kmm_region *map = kmm_memory_map(f.k, &n);
        const char *l = find_in(text.buf, 0, "\"memmap\": [");
        for (size_t i = 0; i < n && l; i++) {
            l = find_in(l + 1, 0, "{\"base\": ");
            KT_ASSERT(t, l != NULL);
            KT_EXPECT_EQ(t, field(l, "base"), map[i].base);
            KT_EXPECT_EQ(t, field(l, "length"), map[i].length);
            KT_EXPECT(t, field_is(l, "type", kmm_mem_type_name(map[i].type)));
        }
        KT_EXPECT(t, find_in(text.buf, 0, "\"page_tables\": {\"levels\": ") != NULL);
        KT_EXPECT(t, find_in(text.buf, 0, "\"kva\": {\"base\": ") != NULL);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(dump, a_missing_sink_is_refused_counted_and_logged)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, small_pc, N(small_pc), 1, 0))
        return;
    struct kmm_misuse_stats before, after;
    kmm_misuse_stats(f.k, &before);
    KT_EXPECT_EQ(t, kmm_dump_json(f.k, NULL), KMM_EINVAL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_dump_json"));
    KT_EXPECT_EQ(t, kmm_dump_json(f.k, &(struct kmm_sink){NULL, &text}), KMM_EINVAL);
    kmm_misuse_stats(f.k, &after);
    KT_EXPECT_EQ(t,
                 after.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_ARG] -
                     before.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_ARG],
                 2);
    KT_EXPECT_EQ(t, after.total - before.total, 2);
    KT_EXPECT_EQ(t, kmm_dump_json(NULL, &(struct kmm_sink){dump_write, &text}), KMM_EINVAL);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(dump, a_torn_down_instance_is_refused_with_nothing_written)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, small_pc, N(small_pc), 1, 0))
        return;
    KT_EXPECT_EQ(t, kmm_fini(f.k), KMM_OK);
    text.len = 0;
    text.buf[0] = '\0';
    /* The machine still holds the instance's memory, its canary cleared. */
    KT_EXPECT_EQ(t, kmm_dump_json(f.k, &(struct kmm_sink){dump_write, &text}), KMM_ESTATE);
    KT_EXPECT_EQ(t, text.len, 0);
    kt_machine_destroy(f.m);
}
