/*
 * kva.c - kernel virtual areas: the range allocator of the window, its
 * figures and its part of kmm_check. The mapping half (vmalloc, vmap) is
 * vmalloc.c; the contracts are in kmm/vmalloc.h.
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"):
 *     1 the kernel space's lock  ->  2 window lock
 *                  (kva_map_conflict and kva_unhold, called by map.c and
 *                  range.c with the kernel space's lock held)
 * Nothing is taken under the window lock: the record array grows (-> 4, 6,
 * may reclaim) and the tables are looked up (-> 1) with it dropped.
 *
 * The window's areas, and the foreign runs (pages the kernel mapped inside
 * the window itself), are records in one array sorted by address (kva.h
 * lists the invariants):
 *
 *   window pages  0                                                    pages
 *                 |==A====|g|  |==B==|g|FFFFFFFF|==C===========|g|        |
 *   records       [A: first 0, pages 6] [B: 9, 4] [F: 13, 8] [C: 21, 15]
 *
 * Finding room is first fit over the gaps between records, a lookup is a
 * binary search, adding or removing a record moves the array's tail: all
 * O(records), under the window lock.
 *
 * Implementation subtleties:
 *  - The window lock (order 2) comes after the address space locks (1), so
 *    it is never held while the kernel space's tables are read. Reserving
 *    (kva_reserve) is therefore three steps: under the lock, the first gap
 *    with room for the area and its guard page gets a SETUP record; without
 *    it, kmm_vm_query looks the range up; if a page of it is mapped, the
 *    mapped stretch that starts there is measured, and under the lock the
 *    SETUP record is replaced by a foreign record for the stretch (cut at
 *    the next record), so later searches step over it without looking it
 *    up again. Then the search starts over.
 *  - A SETUP record keeps its range to itself while it is looked up and
 *    mapped, so the first mapped page found in it is still in a gap when
 *    the record goes.
 *  - Foreign records are hints about somebody else's mappings, which may go
 *    away. When no gap has room, they are all forgotten and the search runs
 *    once more; they go too when the last area does. Only the table lookup
 *    decides that a range is unmapped.
 *  - A replacing kmm_vm_map drops the kernel space's lock between chunks,
 *    so the window check it passed under that lock would not hold for the
 *    rest of its range: it holds the range (struct kva_hold, on its stack,
 *    linked in v->holds) from the check to its end, and the gap search
 *    steps over holds as over records. Holds are not records: they take
 *    no room in the array and may overlap a raw area or a foreign run.
 *  - The array is a run of the page allocator that doubles when full: the
 *    lock is dropped for the allocation (which may reclaim), and the larger
 *    array replaces the current one only if it is still larger when the
 *    lock is back. It goes back to the allocator when no area is left, so
 *    an idle window holds no memory; a one-page array is a single page of
 *    this CPU's page cache (array_alloc), so an area that comes and goes
 *    alone costs no run allocation.
 */
#include "internal.h"

#include <kmm/check.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "vmm/kva.h"

#define RECS_PER_PAGE ((uint32_t)(KMM_PAGE_SIZE / sizeof(struct kva_rec)))

_Static_assert(sizeof(struct kva_rec) == 24, "a record is 24 bytes");
_Static_assert((KMM_KVA_MAX_SIZE >> KMM_PAGE_SHIFT) <= UINT32_MAX / 2,
               "page indexes and counts of a window fit in 32 bits");

static inline uint64_t rec_end(const struct kva_rec *r)
{
    return (uint64_t)r->first + r->pages;
}

/* An area takes its pages and a guard page, live or parked. */
static inline bool is_area(const struct kva_rec *r)
{
    return r->kind != KVA_FOREIGN;
}

/* An area somebody holds: not a foreign run, not parked. */
static inline bool is_live(const struct kva_rec *r)
{
    return is_area(r) && r->kind != KVA_PARKED;
}

static inline uint64_t page_va(const struct kmm_kva *v, uint64_t page)
{
    return v->base + (page << KMM_PAGE_SHIFT);
}

/* Whether va lies in the window; if so, *page is its page index. */
static bool window_page(const struct kmm_kva *v, uint64_t va, uint64_t *page)
{
    if (va < v->base || (va - v->base) >> KMM_PAGE_SHIFT >= v->pages)
        return false;
    *page = (va - v->base) >> KMM_PAGE_SHIFT;
    return true;
}

/* --- the window: configuration and init ------------------------------------------ */

static uint64_t park_scan(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags);

/* Why [base, base + size) cannot be the window, or NULL if it can. */
static const char *bad_window(uint64_t base, uint64_t size, unsigned levels)
{
    if (size == 0)
        return base ? "kva_base without kva_size" : 0;
    if ((base | size) & (KMM_PAGE_SIZE - 1))
        return "not page aligned";
    if (size < 2 * KMM_PAGE_SIZE)
        return "smaller than two pages (an area and its guard page)";
    if (size > KMM_KVA_MAX_SIZE)
        return "larger than KMM_KVA_MAX_SIZE";
    if (base == 0)
        return "holds address 0 (an area there would be NULL)";
    if (base > UINT64_MAX - size)
        return "wraps around (or ends at the top of the address space)";
    uint64_t last = base + size - 1, half = mmu_kernel_half_for(levels);
    if (!mmu_canonical_for(levels, base) || !mmu_canonical_for(levels, last))
        return "not canonical";
    if ((base >= half) != (last >= half))
        return "crosses between the halves";
    return 0;
}

bool kva_config_valid(const struct kmm_config *cfg, unsigned levels, struct kmm_port *p)
{
    const char *why = bad_window(cfg->kva_base, cfg->kva_size, levels);
    if (why)
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: kernel virtual area window 0x%llx size 0x%llx: %s",
                 (unsigned long long)cfg->kva_base, (unsigned long long)cfg->kva_size, why);
    return !why;
}

KMM_INIT void kva_init(struct kmm *k, const struct kmm_config *cfg)
{
    struct kmm_kva *v = &k->kva;
    bool dflt = cfg->kva_size == 0;
    __builtin_memset(v, 0, sizeof(*v));
    v->base = dflt ? KMM_KVA_DEFAULT_BASE : cfg->kva_base;
    v->pages = (dflt ? KMM_KVA_DEFAULT_SIZE : cfg->kva_size) >> KMM_PAGE_SHIFT;
    kmm_lock_init(&v->lock);
    atomic_init(&v->failed, 0);
    v->hint_gen = 1; /* odd: no generation matches, no hint yet */
    v->park_shrinker = (struct kmm_shrinker){.scan = park_scan, .name = "kva-parked"};
    v->canary = KMM_KVA_CANARY;
    k->vm.kernel.kva_base = v->base; /* where the range calls ask about it */
    k->vm.kernel.kva_span = v->pages << KMM_PAGE_SHIFT;
    vb_init(k);
}

uint64_t kva_pages_for(const struct kmm *k, uint64_t size)
{
    uint64_t room = k->kva.pages - 1; /* one page is always a guard page */
    if (size == 0 || size > room << KMM_PAGE_SHIFT)
        return 0;
    return (size + KMM_PAGE_SIZE - 1) >> KMM_PAGE_SHIFT;
}

int kva_misuse(struct kmm *k, int err, enum kmm_misuse cls, const char *fn, uint64_t va,
               uint64_t size, const char *why, const void *caller)
{
    return kmm_misuse(k, KMM_LAYER_KVA, cls, err, caller, "%s(0x%llx, size 0x%llx): %s", fn,
                      (unsigned long long)va, (unsigned long long)size, why);
}

/* --- records ----------------------------------------------------------------------- */

/* The index of the first record that ends after page: the one holding page
 * if there is one, else the first one after it (count if none). */
static uint32_t search_locked(const struct kmm_kva *v, uint64_t page)
{
    uint32_t lo = 0, hi = v->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (rec_end(&v->recs[mid]) <= page)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The record holding page, or NULL. */
static struct kva_rec *holding_locked(struct kmm_kva *v, uint64_t page)
{
    uint32_t i = search_locked(v, page);
    return i < v->count && v->recs[i].first <= page ? &v->recs[i] : 0;
}

/* The area that starts at va, or NULL. */
static struct kva_rec *area_at_locked(struct kmm_kva *v, uint64_t va)
{
    uint64_t page;
    if (!window_page(v, va, &page))
        return 0;
    struct kva_rec *r = holding_locked(v, page);
    return r && is_area(r) && r->first == page ? r : 0;
}

/* Adds (or with remove, takes away) r's share of the counters. A parked
 * area's pages are not used ones: free pages the window keeps for reuse,
 * counted apart (nrec, backed). */
static void account_locked(struct kmm_kva *v, const struct kva_rec *r, bool remove)
{
    uint64_t pages = r->pages, backed = is_area(r) ? pages - 1 : 0;
    uint64_t used = is_live(r) ? pages : 0, foreign = is_area(r) ? 0 : pages;
    if (remove) {
        v->nrec[r->kind]--;
        v->used_pages -= used;
        v->foreign_pages -= foreign;
        v->backed[r->kind] -= backed;
    } else {
        v->nrec[r->kind]++;
        v->used_pages += used;
        v->foreign_pages += foreign;
        v->backed[r->kind] += backed;
    }
}

static void insert_locked(struct kmm *k, uint32_t at, struct kva_rec r)
{
    struct kmm_kva *v = &k->kva;
    KMM_ASSERT(k->port, v->count < v->cap && at <= v->count);
    __builtin_memmove(&v->recs[at + 1], &v->recs[at], (v->count - at) * sizeof(r));
    v->recs[at] = r;
    v->count++;
    account_locked(v, &r, false);
}

static void remove_locked(struct kmm *k, uint32_t at)
{
    struct kmm_kva *v = &k->kva;
    KMM_ASSERT(k->port, at < v->count);
    account_locked(v, &v->recs[at], true);
    __builtin_memmove(&v->recs[at], &v->recs[at + 1], (v->count - at - 1) * sizeof(v->recs[0]));
    v->count--;
}

/* The live areas of every kind. */
static uint64_t areas_locked(const struct kmm_kva *v)
{
    uint64_t n = 0;
    for (unsigned kd = KVA_RAW; kd <= KVA_VBLOCK; kd++)
        n += v->nrec[kd];
    return n;
}

/* Removes every record of kind (in one pass over the array). Returns
 * whether there was one. */
static bool drop_kind_locked(struct kmm_kva *v, enum kva_kind kind)
{
    if (!v->nrec[kind])
        return false;
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->count; i++) {
        if (v->recs[i].kind != kind)
            v->recs[n++] = v->recs[i];
        else
            account_locked(v, &v->recs[i], true);
    }
    v->count = n;
    return true;
}

/* Forgets every foreign record. Returns whether there was one. */
static bool forget_foreign_locked(struct kmm_kva *v)
{
    return drop_kind_locked(v, KVA_FOREIGN);
}

/* A record array taken out of the window, to free once the lock is dropped. */
struct detached {
    uint64_t pa;
    uint32_t pages;
};

/* When no area is left, live or parked, forgets the foreign hints and
 * takes the array out (an idle window holds no memory). */
static struct detached detach_if_idle_locked(struct kmm_kva *v)
{
    struct detached d = {0, 0};
    if (!v->recs || areas_locked(v) || v->nparked)
        return d;
    forget_foreign_locked(v);
    d = (struct detached){v->recs_pa, v->run_pages};
    v->recs = 0;
    v->recs_pa = 0;
    v->run_pages = 0;
    v->cap = 0;
    return d;
}

/* The record array's run of pages: a one-page array (the common case: up
 * to RECS_PER_PAGE records) is a single page, taken and given back through
 * this CPU's page cache, as an idle window frees it and the next area
 * takes it again; a larger one a run. */
static uint64_t array_alloc(struct kmm *k, uint32_t pages)
{
    return pages == 1 ? kmm_page_alloc(k, 0, 0) : kmm_run_alloc(k, pages, 0, 0, 0);
}

static void free_detached(struct kmm *k, struct detached d)
{
    if (d.pa && d.pages == 1)
        KMM_MUST(k->port, kmm_page_free(k, d.pa, 0));
    else if (d.pa)
        KMM_MUST(k->port, kmm_run_free(k, d.pa, d.pages));
}

/*
 * Replaces the record array by one twice as large (one page at first).
 * Takes and drops the lock itself; the allocation runs without it, as it
 * may reclaim. Returns false if the page allocator has no such run.
 */
static bool grow(struct kmm *k)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    uint32_t pages = v->run_pages ? 2 * v->run_pages : 1;
    kva_unlock(v, irq);
    uint64_t pa = array_alloc(k, pages);
    if (!pa)
        return false;
    struct detached old = {pa, pages}; /* the smaller of the two goes */
    irq = kva_lock(v);
    if (v->run_pages < pages) {
        struct kva_rec *recs = kmm_phys_to_virt(k, pa);
        if (v->count)
            __builtin_memcpy(recs, v->recs, v->count * sizeof(*recs));
        old = (struct detached){v->recs_pa, v->run_pages};
        v->recs = recs;
        v->recs_pa = pa;
        v->run_pages = pages;
        v->cap = pages * RECS_PER_PAGE;
    }
    kva_unlock(v, irq);
    free_detached(k, old);
    return true;
}

/* --- parked areas ---------------------------------------------------------------------- */

/*
 * A vmalloc or vmap area that its owner frees is unmapped at once (its
 * invalidations are complete before the free returns, SPEC §4), but its
 * range need not go back at once: the window parks it (kind PARKED), with
 * a hold on the page tables of its spans (pt_held.c), so that the next
 * vmalloc or vmap of exactly its size takes it again (kva_reserve) with no
 * gap search, no table lookup and no page table made, and that area's free
 * frees no table. No lookup is needed because the window kept the range:
 * kva_map_conflict refuses plain maps there, as in any area. Linux defers
 * the same work for its lazily freed vmap areas and keeps its vmalloc page
 * tables for ever; here at most KVA_PARK_MAX areas of at most
 * KVA_PARK_PAGES pages are parked, the oldest goes when one more is, and
 * all go (kmm_kva_purge) when a reservation finds no room, when the page
 * allocator runs short (the "kva-parked" shrinker) or when a caller asks.
 */

static void park_list_remove(struct kmm_kva *v, uint32_t i)
{
    __builtin_memmove(&v->parked[i], &v->parked[i + 1],
                      (v->nparked - i - 1) * sizeof(v->parked[0]));
    v->nparked--;
}

/* Changes r's kind between a live area's and PARKED (and so its share of
 * the counters: account_locked's rule, in a few stores). */
static void set_kind_locked(struct kmm_kva *v, struct kva_rec *r, enum kva_kind kind)
{
    uint64_t backed = r->pages - 1u;
    v->nrec[r->kind]--;
    v->backed[r->kind] -= backed;
    v->nrec[kind]++;
    v->backed[kind] += backed;
    if (kind == KVA_PARKED)
        v->used_pages -= r->pages;
    else
        v->used_pages += r->pages;
    r->kind = (uint8_t)kind;
}

/* Takes the newest parked area of need pages (guard page included) for a
 * new area like proto: SETUP, of proto's kind and caller. Returns whether
 * there was one, its first page in *first. */
static bool unpark_locked(struct kmm *k, uint64_t need, struct kva_rec proto, uint64_t *first)
{
    struct kmm_kva *v = &k->kva;
    for (uint32_t i = v->nparked; i-- > 0;) {
        if (v->parked[i].pages != need)
            continue;
        *first = v->parked[i].first;
        park_list_remove(v, i);
        struct kva_rec *r = &v->recs[search_locked(v, *first)];
        KMM_ASSERT(k->port, r->first == *first && r->kind == KVA_PARKED && r->held);
        set_kind_locked(v, r, (enum kva_kind)proto.kind);
        r->caller = proto.caller;
        r->state = KVA_SETUP;
        return true;
    }
    return false;
}

/* Takes the oldest parked area out of the list and the records. The holds
 * on its tables are the caller's to drop (unhold_parked) once the lock is
 * dropped: its range may be reserved before that, which is harmless, as a
 * hold only keeps a table that would otherwise be freed. */
static struct kva_park evict_oldest_locked(struct kmm *k)
{
    struct kmm_kva *v = &k->kva;
    struct kva_park p = v->parked[0];
    park_list_remove(v, 0);
    uint32_t at = search_locked(v, p.first);
    KMM_ASSERT(k->port,
               at < v->count && v->recs[at].first == p.first && v->recs[at].kind == KVA_PARKED);
    remove_locked(k, at);
    return p;
}

/* Drops the holds of an area taken out of the records (pages: its record's,
 * guard page included), freeing the tables that empty. No lock held. */
static void unhold_parked(struct kmm *k, struct kva_park p)
{
    uint64_t va = page_va(&k->kva, p.first);
    kva_unhold_spans(k, va, va + (((uint64_t)p.pages - 1) << KMM_PAGE_SHIFT));
}

uint64_t kva_kernel_tables(struct kmm *k)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    uint64_t n = ks->mmu.counts.tables[MMU_PT] + ks->mmu.counts.tables[MMU_PD] +
                 ks->mmu.counts.tables[MMU_PDPT];
    kmm_unlock_irqrestore(&ks->lock, irq);
    return n;
}

uint64_t kmm_kva_purge(struct kmm *k)
{
    struct kmm_kva *v = &k->kva;
    struct kva_park gone[KVA_PARK_MAX];
    kmm_irqstate_t irq = kva_lock(v);
    uint32_t n = v->nparked;
    __builtin_memcpy(gone, v->parked, n * sizeof(gone[0]));
    drop_kind_locked(v, KVA_PARKED); /* one pass, not a move of the array per area */
    v->nparked = 0;
    /* With nothing parked too: an array whose reservation has not put its
     * record in yet (grow, then the next pass) is an idle window's. */
    struct detached d = detach_if_idle_locked(v);
    kva_unlock(v, irq);
    uint64_t freed = d.pages;
    if (n) {
        uint64_t tables = kva_kernel_tables(k);
        for (uint32_t i = 0; i < n; i++)
            unhold_parked(k, gone[i]);
        /* What the drops freed (others may map meanwhile: a figure). */
        tables -= kva_kernel_tables(k);
        freed += tables < UINT64_MAX / 2 ? tables : 0;
    }
    free_detached(k, d);
    return freed;
}

static uint64_t park_scan(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags)
{
    (void)ctx;
    (void)want_pages;
    (void)flags;
    return kmm_kva_purge(k);
}

void kva_retire(struct kmm *k, uint64_t va, bool held, bool park)
{
    struct kmm_kva *v = &k->kva;
    struct kva_park gone = {0, 0}; /* an area whose holds go */
    bool first_park = false;
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_rec *r = area_at_locked(v, va);
    KMM_ASSERT(k->port,
               r && r->state != KVA_READY && (r->kind == KVA_VMALLOC || r->kind == KVA_VMAP));
    r->held |= held;
    if (park && r->held && r->pages - 1u <= KVA_PARK_PAGES) {
        if (v->nparked == KVA_PARK_MAX) {
            gone = evict_oldest_locked(k);
            r = area_at_locked(v, va); /* the records moved */
        }
        v->parked[v->nparked++] = (struct kva_park){r->first, r->pages};
        set_kind_locked(v, r, KVA_PARKED);
        r->state = KVA_READY;
        first_park = !v->park_shrinker_on;
        v->park_shrinker_on = true;
    } else {
        if (r->held)
            gone = (struct kva_park){r->first, r->pages};
        remove_locked(k, (uint32_t)(r - v->recs));
    }
    struct detached d = detach_if_idle_locked(v);
    kva_unlock(v, irq);
    if (gone.pages)
        unhold_parked(k, gone);
    free_detached(k, d);
    if (first_park) /* once per instance, as the heap's: never unregistered */
        KMM_MUST(k->port, kmm_shrinker_register(k, &v->park_shrinker));
}

/* --- holding an area's page tables ------------------------------------------------------ */

int kva_hold_spans(struct kmm *k, uint64_t va, uint64_t end)
{
    uint64_t at;
    int err = KMM_OK;
    for (at = va; at < end && (err = vb_hold_table(k, at, 0)) == KMM_OK;)
        at = (at | (KMM_PAGE_2M - 1)) + 1;
    if (err)
        kva_unhold_spans(k, va, at); /* the spans before the one that failed */
    return err;
}

void kva_unhold_spans(struct kmm *k, uint64_t va, uint64_t end)
{
    for (uint64_t at = va; at < end; at = (at | (KMM_PAGE_2M - 1)) + 1)
        vb_unhold_table(k, at);
}

/* --- reserving a range ------------------------------------------------------------- */

/* The end of a hold that meets [from, from + need), or 0 if none does. */
static uint64_t held_until_locked(const struct kmm_kva *v, uint64_t from, uint64_t need)
{
    for (const struct kva_hold *h = v->holds; h; h = h->next)
        if (h->first < from + need && from < h->end)
            return h->end;
    return 0;
}

/* The first window page at or after page whose address is a multiple of
 * align pages (a power of two; 1: page itself). */
static inline uint64_t align_page(const struct kmm_kva *v, uint64_t page, uint64_t align)
{
    if (align == 1)
        return page;
    uint64_t abs = (v->base >> KMM_PAGE_SHIFT) + page;
    return ((abs + align - 1) & ~(align - 1)) - (v->base >> KMM_PAGE_SHIFT);
}

/* First fit: the lowest page, at an address that is a multiple of align
 * pages, where need pages lie between two records (or the window's ends)
 * and meet no hold; *at gets the index to insert its record at. Each hold
 * met moves the search past it. */
static bool find_gap_locked(const struct kmm_kva *v, uint64_t need, uint64_t align, uint64_t *first,
                            uint32_t *at)
{
    uint64_t from = 0;
    for (uint32_t i = 0; i <= v->count; i++) {
        uint64_t to = i < v->count ? v->recs[i].first : v->pages;
        for (uint64_t held; (from = align_page(v, from, align)) < to && to - from >= need;
             from = held) {
            held = held_until_locked(v, from, need);
            if (!held) {
                *first = from;
                *at = i;
                return true;
            }
        }
        if (i < v->count)
            from = rec_end(&v->recs[i]);
    }
    return false;
}

/* The longest gap between records, in pages. */
static uint64_t largest_gap_locked(const struct kmm_kva *v)
{
    uint64_t from = 0, best = 0;
    for (uint32_t i = 0; i <= v->count; i++) {
        uint64_t to = i < v->count ? v->recs[i].first : v->pages;
        if (to - from > best)
            best = to - from;
        if (i < v->count)
            from = rec_end(&v->recs[i]);
    }
    return best;
}

/*
 * Looks the window pages [first, first + need) up in the kernel space (no
 * lock held). Returns true if none is mapped. Otherwise stores the mapped
 * stretch that begins at the first mapped page of the range, to the next
 * unmapped page or the window's end, in [*m0, *m1).
 */
static bool range_unmapped(struct kmm *k, uint64_t first, uint64_t need, uint64_t *m0, uint64_t *m1)
{
    struct kmm_kva *v = &k->kva;
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    uint64_t va = page_va(v, first), limit = page_va(v, first + need);
    uint64_t end = page_va(v, v->pages);
    struct kmm_vm_run run;
    KMM_MUST(k->port, kmm_vm_query(ks, va, limit, &run));
    if (!run.mapped && run.size == limit - va)
        return true;
    uint64_t at = run.mapped ? va : va + run.size;
    *m0 = (at - v->base) >> KMM_PAGE_SHIFT;
    while (at < end) {
        KMM_MUST(k->port, kmm_vm_query(ks, at, end, &run));
        if (!run.mapped)
            break;
        at += run.size;
    }
    *m1 = (at - v->base) >> KMM_PAGE_SHIFT;
    return false;
}

/*
 * Replaces the SETUP record at page first by a foreign record for the
 * mapped stretch [m0, m1) that begins inside it, cut at the next record and
 * merged with foreign neighbours. Never needs more room than it frees.
 */
static void note_foreign_locked(struct kmm *k, uint64_t first, uint64_t m0, uint64_t m1)
{
    struct kmm_kva *v = &k->kva;
    uint32_t at = search_locked(v, first);
    KMM_ASSERT(k->port, at < v->count && v->recs[at].first == first &&
                            v->recs[at].state == KVA_SETUP && m0 >= first &&
                            m0 < rec_end(&v->recs[at]));
    remove_locked(k, at);
    at = search_locked(v, m0); /* m0 was ours, so it is in a gap: recs[at] starts after it */
    KMM_ASSERT(k->port, at == v->count || v->recs[at].first > m0);
    uint64_t lo = m0, hi = at < v->count && v->recs[at].first < m1 ? v->recs[at].first : m1;
    if (at < v->count && v->recs[at].first == hi && !is_area(&v->recs[at])) {
        hi = rec_end(&v->recs[at]);
        remove_locked(k, at);
    }
    if (at > 0 && rec_end(&v->recs[at - 1]) == lo && !is_area(&v->recs[at - 1])) {
        lo = v->recs[--at].first;
        remove_locked(k, at);
    }
    insert_locked(k, at,
                  (struct kva_rec){.first = (uint32_t)lo,
                                   .pages = (uint32_t)(hi - lo),
                                   .kind = KVA_FOREIGN,
                                   .state = KVA_READY});
}

/* Outcome of one pass of the search under the lock. */
enum pass { PASS_RESERVED, PASS_UNPARKED, PASS_GROW, PASS_RETRY, PASS_PURGE, PASS_FULL };

/* One search under the lock: take a parked area of the size (a vmalloc or
 * vmap area) or reserve the first gap with room (its first page in
 * *first), or say why not. */
static enum pass reserve_pass_locked(struct kmm *k, uint64_t need, uint64_t align,
                                     struct kva_rec proto, bool *forgot, bool purged,
                                     uint64_t *first)
{
    struct kmm_kva *v = &k->kva;
    if (align == 1 && (proto.kind == KVA_VMALLOC || proto.kind == KVA_VMAP) &&
        unpark_locked(k, need, proto, first))
        return PASS_UNPARKED;
    if (v->count == v->cap)
        return PASS_GROW;
    uint32_t at;
    if (!find_gap_locked(v, need, align, first, &at)) {
        if (!*forgot && forget_foreign_locked(v)) {
            *forgot = true; /* the kernel may have unmapped them since: look again */
            return PASS_RETRY;
        }
        return !purged && v->nparked ? PASS_PURGE : PASS_FULL;
    }
    proto.first = (uint32_t)*first;
    insert_locked(k, at, proto);
    return PASS_RESERVED;
}

/* Ends a reservation that failed; an array left holding only foreign hints
 * goes back (full: the window had no room, which is counted). */
static int reserve_failed(struct kmm *k, bool full)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    struct detached d = detach_if_idle_locked(v);
    kva_unlock(v, irq);
    free_detached(k, d);
    if (full)
        atomic_fetch_add_explicit(&v->failed, 1, memory_order_relaxed);
    return KMM_ENOMEM;
}

int kva_reserve(struct kmm *k, uint64_t pages, enum kva_kind kind, const void *caller, uint64_t *va)
{
    return kva_reserve_aligned(k, pages, 1, kind, caller, va);
}

int kva_reserve_aligned(struct kmm *k, uint64_t pages, uint64_t align, enum kva_kind kind,
                        const void *caller, uint64_t *va)
{
    struct kmm_kva *v = &k->kva;
    uint64_t need = pages + 1; /* and the guard page */
    struct kva_rec proto = {.caller = (uint64_t)(uintptr_t)caller,
                            .pages = (uint32_t)need,
                            .kind = (uint8_t)kind,
                            .state = KVA_SETUP};
    bool forgot = false, purged = false, regrown = false;
    for (;;) {
        uint64_t first = 0, m0, m1;
        kmm_irqstate_t irq = kva_lock(v);
        enum pass p = reserve_pass_locked(k, need, align, proto, &forgot, purged, &first);
        kva_unlock(v, irq);
        if (p == PASS_UNPARKED) { /* the window kept it: unmapped, no lookup */
            *va = page_va(v, first);
            return KMM_OK;
        }
        if (p == PASS_FULL)
            return reserve_failed(k, true);
        if (p == PASS_GROW && !grow(k)) {
            if (regrown) /* no memory for a larger array, twice */
                return reserve_failed(k, false);
            regrown = true; /* the allocation's reclaim may have purged parked records */
            continue;
        }
        if (p == PASS_PURGE) {
            kmm_kva_purge(k); /* parked ranges are free ones, kept for speed */
            purged = true;
        }
        if (p != PASS_RESERVED)
            continue;
        if (range_unmapped(k, first, need, &m0, &m1)) {
            *va = page_va(v, first);
            return KMM_OK;
        }
        irq = kva_lock(v);
        note_foreign_locked(k, first, m0, m1);
        kva_unlock(v, irq);
    }
}

/* --- an area's life after its reservation ----------------------------------------- */

void kva_publish(struct kmm *k, uint64_t va)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_rec *r = area_at_locked(v, va);
    KMM_ASSERT(k->port, r && r->state == KVA_SETUP);
    r->state = KVA_READY;
    kva_unlock(v, irq);
}

void kva_release(struct kmm *k, uint64_t va)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_rec *r = area_at_locked(v, va);
    KMM_ASSERT(k->port, r && r->state != KVA_READY);
    remove_locked(k, (uint32_t)(r - v->recs));
    struct detached d = detach_if_idle_locked(v);
    kva_unlock(v, irq);
    free_detached(k, d);
}

static const char *const kind_text[KVA_KINDS] = {
    [KVA_FOREIGN] = "foreign", [KVA_RAW] = "raw",           [KVA_VMALLOC] = "vmalloc",
    [KVA_VMAP] = "vmap",       [KVA_VBLOCK] = "vmap-block", [KVA_PARKED] = "parked",
};

static const char *const wrong_kind_text[KVA_KINDS] = {
    [KVA_RAW] = "a raw area: free it with kmm_kva_free",
    [KVA_VMALLOC] = "a vmalloc area: free it with kmm_vfree",
    [KVA_VMAP] = "a vmap area: free it with kmm_vunmap",
    [KVA_VBLOCK] = "a vmap block: free its ranges with kmm_vm_unmap_ram",
};

/* Judges a free of the area at page of kind: why NULL if it may go (then
 * it is marked DYING and *pages set), else the refusal. An area gone
 * already cannot be told from one never handed out (the window keeps no
 * history): ABSENT; one being freed at this moment is a double free. */
static struct kva_refusal judge_free_locked(struct kmm_kva *v, uint64_t page, enum kva_kind kind,
                                            uint64_t *pages, bool *held)
{
    struct kva_rec *r = holding_locked(v, page);
    if (!r || !is_live(r) || r->state == KVA_SETUP)
        return (struct kva_refusal){"no area starts here (never allocated, or freed already)",
                                    KMM_ENOENT, KMM_MISUSE_ABSENT};
    if (r->first != page)
        return (struct kva_refusal){page - r->first < r->pages - 1u
                                        ? "inside an area, not its start"
                                        : "the guard page of an area",
                                    KMM_EINVAL, KMM_MISUSE_NOT_BLOCK};
    if (r->state == KVA_DYING)
        return (struct kva_refusal){"the area is being freed already (double free)", KMM_ESTATE,
                                    KMM_MISUSE_DOUBLE_FREE};
    if (r->kind != kind)
        return (struct kva_refusal){wrong_kind_text[r->kind], KMM_EINVAL, KMM_MISUSE_BAD_HANDLE};
    r->state = KVA_DYING;
    *pages = r->pages - 1u;
    if (held)
        *held = r->held != 0;
    return KVA_ACCEPTED;
}

int kva_begin_free(struct kmm *k, uint64_t va, enum kva_kind kind, const char *fn,
                   const void *caller, uint64_t *pages, bool *held)
{
    struct kmm_kva *v = &k->kva;
    uint64_t page;
    if (!window_page(v, va, &page))
        return kva_misuse(k, KMM_ERANGE, KMM_MISUSE_OUTSIDE, fn, va, 0,
                          "not in the kernel virtual area window", caller);
    if (va & (KMM_PAGE_SIZE - 1))
        return kva_misuse(k, KMM_EINVAL, KMM_MISUSE_UNALIGNED, fn, va, 0,
                          "not page aligned: not an area's start", caller);
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_refusal no = judge_free_locked(v, page, kind, pages, held);
    kva_unlock(v, irq);
    return no.why ? kva_misuse(k, no.err, no.cls, fn, va, 0, no.why, caller) : KMM_OK;
}

void kva_set_held(struct kmm *k, uint64_t va, bool held)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_rec *r = area_at_locked(v, va);
    KMM_ASSERT(k->port, r && r->kind == KVA_RAW && r->state == KVA_DYING);
    r->held = held;
    kva_unlock(v, irq);
}

uint64_t kva_area_holds(struct kmm *k)
{
    struct kmm_kva *v = &k->kva;
    uint64_t n = 0;
    kmm_irqstate_t irq = kva_lock(v);
    for (uint32_t i = 0; v->recs && i < v->count; i++)
        if (v->recs[i].held)
            n += kva_spans(page_va(v, v->recs[i].first), ((uint64_t)v->recs[i].pages - 1)
                                                             << KMM_PAGE_SHIFT);
    kva_unlock(v, irq);
    return n;
}

void kva_abort_free(struct kmm *k, uint64_t va)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_rec *r = area_at_locked(v, va);
    KMM_ASSERT(k->port, r && r->state == KVA_DYING);
    r->state = KVA_READY;
    kva_unlock(v, irq);
}

/* --- what the window keeps from plain mappings ------------------------------------------ */

/* Why area r keeps a page of [first, last] (window page indexes the area
 * meets), or NULL if the pages are its caller's to map. */
static const char *area_keeps(const struct kva_rec *r, uint64_t first, uint64_t last)
{
    uint64_t guard = rec_end(r) - 1;
    if (guard >= first && guard <= last)
        return "the guard page of a kernel virtual area, which stays unmapped";
    if (r->kind == KVA_PARKED)
        return "a page of a freed area that the window keeps for reuse (kmm_kva_purge gives it "
               "back)";
    if (r->kind != KVA_RAW)
        return "a page of a vmalloc or vmap area, which only its allocator maps and unmaps";
    if (r->state != KVA_READY)
        return "a page of a kernel virtual area being set up or freed";
    return 0;
}

/* Makes the usable pages of the ready raw area r the hint, valid from the
 * end of this hold (lock held: the generation is odd, and even again, one
 * more, after kva_unlock). */
static void hint_set_locked(struct kmm_kva *v, const struct kva_rec *r)
{
    __atomic_store_n(&v->hint_first, page_va(v, r->first), __ATOMIC_RELEASE);
    __atomic_store_n(&v->hint_last, page_va(v, rec_end(r) - 1) - 1,
                     __ATOMIC_RELEASE); /* before the guard */
    __atomic_store_n(&v->hint_gen, v->gen + 1, __ATOMIC_RELEASE);
}

/* kva_map_conflict's look under the lock at window pages [first, last],
 * which leaves the hint behind when one ready raw area holds them all. Out
 * of line, so that the hint's path saves no register. */
static __attribute__((noinline)) const char *conflict_look(struct kmm_kva *v, uint64_t first,
                                                           uint64_t last, struct kva_hold *hold)
{
    const char *why = 0;
    const struct kva_rec *only = 0; /* the one area met, if it lets the caller map */
    unsigned met = 0;
    kmm_irqstate_t irq = kva_lock(v);
    for (uint32_t i = search_locked(v, first); !why && i < v->count && v->recs[i].first <= last;
         i++)
        if (is_area(&v->recs[i])) {
            why = area_keeps(&v->recs[i], first, last);
            only = &v->recs[i];
            met++;
        }
    if (!why && met == 1 && only->first <= first)
        hint_set_locked(v, only);
    if (!why && hold) {
        *hold = (struct kva_hold){.first = first, .end = last + 1, .next = v->holds};
        v->holds = hold;
    }
    kva_unlock(v, irq);
    return why;
}

const char *kva_map_conflict(struct kmm *k, uint64_t va, uint64_t size, struct kva_hold *hold)
{
    struct kmm_kva *v = &k->kva;
    if (hold)
        hold->end = 0;
    if (!kva_window_meets(v, va, size))
        return 0;
    uint64_t last_va = va + (size - 1), end_va = page_va(v, v->pages) - 1;
    uint64_t first = va < v->base ? 0 : (va - v->base) >> KMM_PAGE_SHIFT;
    uint64_t last = ((last_va < end_va ? last_va : end_va) - v->base) >> KMM_PAGE_SHIFT;
    return conflict_look(v, first, last, hold);
}

void kva_unhold(struct kmm *k, struct kva_hold *hold)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    struct kva_hold **link = &v->holds;
    while (*link != hold) {
        KMM_ASSERT(k->port, *link != 0); /* a hold the window does not have */
        link = &(*link)->next;
    }
    *link = hold->next;
    kva_unlock(v, irq);
    hold->end = 0;
}

/* --- lookup and figures -------------------------------------------------------------- */

static void describe(const struct kmm_kva *v, const struct kva_rec *r, struct kmm_kva_area *out)
{
    out->va = page_va(v, r->first);
    out->size = ((uint64_t)r->pages - 1) << KMM_PAGE_SHIFT;
    out->kind = (enum kmm_kva_kind)r->kind;
    out->caller = (const void *)(uintptr_t)r->caller;
}

int kmm_kva_lookup(struct kmm *k, uint64_t addr, struct kmm_kva_area *out)
{
    struct kmm_kva *v = &k->kva;
    uint64_t page;
    if (!window_page(v, addr, &page))
        return KMM_ENOENT;
    kmm_irqstate_t irq = kva_lock(v);
    const struct kva_rec *r = holding_locked(v, page);
    bool found = r && is_live(r) && r->state == KVA_READY;
    if (found)
        describe(v, r, out);
    kva_unlock(v, irq);
    return found ? KMM_OK : KMM_ENOENT;
}

bool kva_next_area(struct kmm *k, uint64_t *from, struct kmm_kva_area *out)
{
    struct kmm_kva *v = &k->kva;
    uint64_t page = *from < v->base ? 0 : (*from - v->base) >> KMM_PAGE_SHIFT;
    bool found = false;
    kmm_irqstate_t irq = kva_lock(v);
    for (uint32_t i = search_locked(v, page); i < v->count && !found; i++) {
        const struct kva_rec *r = &v->recs[i];
        if (r->first >= page && is_live(r) && r->state == KVA_READY) {
            describe(v, r, out);
            *from = page_va(v, rec_end(r));
            found = true;
        }
    }
    kva_unlock(v, irq);
    return found;
}

const char *kva_kind_name(unsigned kind)
{
    return kind < KVA_KINDS ? kind_text[kind] : "?";
}

void kmm_kva_park_stats(struct kmm *k, struct kmm_kva_park_stats *out)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    *out =
        (struct kmm_kva_park_stats){.areas = v->nrec[KVA_PARKED], .pages = v->backed[KVA_PARKED]};
    kva_unlock(v, irq);
}

void kmm_vmalloc_stats(struct kmm *k, struct kmm_vmalloc_stats *out)
{
    struct kmm_kva *v = &k->kva;
    kmm_irqstate_t irq = kva_lock(v);
    *out = (struct kmm_vmalloc_stats){
        .window_base = v->base,
        .window_size = v->pages << KMM_PAGE_SHIFT,
        .areas = areas_locked(v),
        .vmalloc_areas = v->nrec[KVA_VMALLOC],
        .vmap_areas = v->nrec[KVA_VMAP],
        .raw_areas = v->nrec[KVA_RAW],
        .used_pages = v->used_pages,
        .vmalloc_pages = v->backed[KVA_VMALLOC],
        .vmap_pages = v->backed[KVA_VMAP],
        .foreign_pages = v->foreign_pages,
        .largest_free_pages = largest_gap_locked(v),
        .metadata_pages = v->run_pages,
    };
    kva_unlock(v, irq);
    out->failed_allocs = atomic_load_explicit(&v->failed, memory_order_relaxed);
    vb_stats(k, out);
    out->misuse = kmm_misuse_layer_total(k, KMM_LAYER_KVA);
}

/* --- kmm_check's part ------------------------------------------------------------------ */

/* The record array's shape: storage, order, bounds, kinds and states. */
static void check_array_locked(const struct kmm_kva *v, struct kmm_check_result *r)
{
    if (!v->recs) {
        if (v->count || v->cap || v->run_pages)
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "kva: no record array but %u records",
                              v->count);
        return;
    }
    if (v->count > v->cap || v->cap != v->run_pages * RECS_PER_PAGE)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "kva: %u records, room %u in %u pages", v->count,
                          v->cap, v->run_pages);
    uint64_t prev_end = 0;
    bool prev_foreign = false;
    for (uint32_t i = 0; i < v->count; i++) {
        const struct kva_rec *x = &v->recs[i];
        bool area = is_area(x);
        if (x->kind >= KVA_KINDS || x->state < KVA_SETUP || x->state > KVA_DYING ||
            (!area && x->state != KVA_READY) || x->pages < (area ? 2u : 1u) ||
            (x->kind == KVA_PARKED && (x->state != KVA_READY || !x->held)) ||
            rec_end(x) > v->pages || x->first < prev_end ||
            (!area && prev_foreign && x->first == prev_end)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "kva: record %u (page %u, %u pages, kind %u, state %u) is malformed "
                              "or out of order",
                              i, x->first, x->pages, x->kind, x->state);
            return;
        }
        prev_end = rec_end(x);
        prev_foreign = !area;
    }
}

/* The counters against a recount of the records. */
static void check_counters_locked(const struct kmm_kva *v, struct kmm_check_result *r)
{
    uint64_t nrec[KVA_KINDS] = {0}, backed[KVA_KINDS] = {0}, used = 0, foreign = 0;
    for (uint32_t i = 0; v->recs && i < v->count; i++) {
        const struct kva_rec *x = &v->recs[i];
        nrec[x->kind]++;
        used += is_live(x) ? x->pages : 0;
        foreign += is_area(x) ? 0 : x->pages;
        backed[x->kind] += is_area(x) ? x->pages - 1u : 0;
    }
    bool same = used == v->used_pages && foreign == v->foreign_pages;
    for (unsigned kd = 0; kd < KVA_KINDS; kd++)
        same &= nrec[kd] == v->nrec[kd] && backed[kd] == v->backed[kd];
    if (!same)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "kva: counters (used %llu, foreign %llu) differ from the records (used "
                          "%llu, foreign %llu)",
                          (unsigned long long)v->used_pages, (unsigned long long)v->foreign_pages,
                          (unsigned long long)used, (unsigned long long)foreign);
    if (v->recs && areas_locked(v) + nrec[KVA_PARKED] == 0)
        kmm_check_problem(r, KMM_CHECK_LEAK, "kva: a record array of %u pages and no area",
                          v->run_pages);
}

/* The park list against the records: each entry a parked record of its
 * size, no record named twice, and as many entries as parked records (so
 * every parked record is listed once). */
static void check_parked_locked(struct kmm_kva *v, struct kmm_check_result *r)
{
    bool ok = v->nparked <= KVA_PARK_MAX && v->nparked == v->nrec[KVA_PARKED];
    for (uint32_t i = 0; ok && i < v->nparked; i++) {
        const struct kva_rec *x = holding_locked(v, v->parked[i].first);
        ok = x && x->first == v->parked[i].first && x->kind == KVA_PARKED &&
             x->pages == v->parked[i].pages && x->pages - 1u <= KVA_PARK_PAGES;
        for (uint32_t j = 0; ok && j < i; j++) /* at most KVA_PARK_MAX squared / 2 */
            ok = v->parked[j].first != v->parked[i].first;
    }
    if (!ok)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "kva: the park list (%u areas) differs from the parked records (%llu)",
                          v->nparked, (unsigned long long)v->nrec[KVA_PARKED]);
}

/* A parked area's pages and guard page, which nobody maps (its list entry
 * copied under the lock; checked without it, at a quiet point). */
static void check_parked_tables(struct kmm *k, struct kva_park p, struct kmm_check_result *r)
{
    struct kmm_vm_run run;
    uint64_t va = page_va(&k->kva, p.first), end = va + ((uint64_t)p.pages << KMM_PAGE_SHIFT);
    KMM_MUST(k->port, kmm_vm_query(kmm_kernel_aspace(k), va, end, &run));
    if (run.mapped || run.size != end - va)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "kva: parked area 0x%llx: page 0x%llx is mapped",
                          (unsigned long long)va,
                          (unsigned long long)(run.mapped ? va : va + run.size));
}

/* Whether [va, va + size) is all mapped with ownership `owned` (and, for
 * vmalloc, its protection); else reports the first page that is not. */
static void check_mapped(struct kmm *k, const struct kmm_kva_area *a, struct kmm_check_result *r)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    bool owned = a->kind == KMM_KVA_VMALLOC;
    for (uint64_t at = a->va, end = a->va + a->size; at < end;) {
        struct kmm_vm_run run;
        KMM_MUST(k->port, kmm_vm_query(ks, at, end, &run));
        if (!run.mapped || run.owned != owned || (owned && run.prot != KMM_VMALLOC_PROT)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "kva: %s area 0x%llx: page 0x%llx is %s",
                              kva_kind_name(a->kind), (unsigned long long)a->va,
                              (unsigned long long)at,
                              !run.mapped ? "not mapped" : "mapped otherwise than it made it");
            return;
        }
        at += run.size;
    }
}

/* A ready area's pages against the kernel space's tables, and its guard
 * page, which nobody may map. Runs without the window lock (order). */
static void check_area_tables(struct kmm *k, const struct kmm_kva_area *a,
                              struct kmm_check_result *r)
{
    if (a->kind == KMM_KVA_VMAP_BLOCK)
        vb_check_area(k, a, r); /* its ranges' pages against its bitmap */
    else if (a->kind != KMM_KVA_RAW)
        check_mapped(k, a, r);
    struct kmm_vm_translation tr;
    if (kmm_vm_translate(kmm_kernel_aspace(k), a->va + a->size, &tr) != KMM_ENOENT)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "kva: the guard page of area 0x%llx is mapped",
                          (unsigned long long)a->va);
}

void kva_check(struct kmm *k, struct kmm_check_result *r)
{
    struct kmm_kva *v = &k->kva;
    if (v->canary != KMM_KVA_CANARY) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "kva: window canary overwritten: 0x%llx",
                          (unsigned long long)v->canary);
        return;
    }
    unsigned long before = r->problems;
    kmm_irqstate_t irq = kva_lock(v);
    check_array_locked(v, r);
    if (r->problems == before)
        check_counters_locked(v, r);
    if (r->problems == before)
        check_parked_locked(v, r);
    struct kva_park parked[KVA_PARK_MAX];
    uint32_t nparked = r->problems == before ? v->nparked : 0;
    __builtin_memcpy(parked, v->parked, nparked * sizeof(parked[0]));
    kva_unlock(v, irq);
    if (r->problems != before)
        return;
    for (uint32_t i = 0; i < nparked; i++)
        check_parked_tables(k, parked[i], r);
    /* One area at a time, the lock dropped for the table walk: exact at a
     * quiet point, as the rest of kmm_check. */
    struct kmm_kva_area a;
    for (uint64_t from = v->base; kva_next_area(k, &from, &a);)
        check_area_tables(k, &a, r);
    vb_check(k, r);
}
