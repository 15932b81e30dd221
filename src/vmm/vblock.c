/*
 * vblock.c - vmap blocks: kmm_vm_map_ram's per-CPU fast path (Linux's
 * vmap_block). The public calls are in vmalloc.c; contracts in
 * kmm/vmalloc.h.
 *
 * A block is a kernel virtual area of kind KVA_VBLOCK: one 2 MiB-aligned
 * span of VB_PAGES pages whose last page is the area's guard page. It is
 * reserved once, and its one page table is built and held (pt_held.c) for
 * the block's life, so mapping a range in it allocates nothing and walks
 * nothing. Ranges of up to KMM_MAP_RAM_MAX pages are carved from it, each
 * followed by a guard page of its own that is never mapped:
 *
 *   page   0  1  2  3  4  5  6 ...      k k+1 k+2 ...   511
 *          |r0 r0 r0|g |r1|g |.. free ..|r2 r2 |g |.. free ..|G|   G: the area's guard page
 *   map    1  1  1  1  1  1  0 ...      1  1  1  0 ...       1
 *   len    3  0  0  0  1  0  0 ...      2  0  0  0 ...       0
 *
 * map has a bit per taken page (a range's pages and its guard page; the
 * area's guard page always), len[p] the page count of the range that
 * starts at p (0 elsewhere), with VB_DYING set while it is being unmapped.
 * A map takes the first fit from this CPU's current block, from hint on
 * (every page below hint is taken). An unmap finds the block by address
 * (this CPU's current block first, else the list), judges the request
 * and clears the range's leaves. If no TLB may hold any of them (their
 * accessed flags are clear where the MMU caches only accessed leaves:
 * pt_leaf_cached), the pages go back to the bitmap in the same lock hold;
 * else the range is marked DYING, its invalidation completed with the lock
 * dropped, and only then are its pages given back: a range is never handed
 * out while a TLB may still hold one of its pages (SPEC §4).
 *
 * Invariants (vb_check_area, vb_check), at a quiet point:
 *   - used is the number of bits set in map; ranges the number of non-zero
 *     len entries; each range's pages and guard page are set in map, every
 *     other bit is clear but the area's guard page; below hint every page
 *     is taken;
 *   - a range's pages are mapped (not owned), every other page of the block
 *     is unmapped; the block's page table is held, and table is it;
 *   - the list holds exactly the window's KVA_VBLOCK areas (nblocks of
 *     them), the kernel space's page tables carry one hold per block and
 *     the areas' holds (kva_area_holds: populated raw areas, parked areas
 *     and areas that took a parked range), and each CPU's current block is
 *     on the list with cpu naming that CPU.
 *
 * Locking (docs/architecture.md): every block's record, the list and the
 * CPUs' slots are under the kernel space's lock (1), which every change of
 * the kernel's tables takes anyway: a map or unmap of a range holds it
 * once, for the bookkeeping and the leaves together, and takes no other
 * lock (each hold costs, and so does each restore of the interrupt flag).
 * The window lock (2) and the page allocator's locks are taken with it
 * dropped, as are the gathers finished.
 *
 * Lifetime: a block lives while it is a CPU's current block or holds a
 * range; it goes on the list holding its maker's range already, so it is
 * never idle before it becomes current. Whoever finds it holding no range
 * and being no CPU's dooms it (the unmap that empties a block no CPU takes
 * from any more, a map that replaces a CPU's empty current block, a
 * drain): only that caller unlinks it from the list and frees it, and
 * nothing takes a range from a doomed block, as only current blocks hand
 * ranges out. The kernel space's lock keeps a listed block's memory valid
 * for a lookup.
 */
#include "internal.h"

#include <kmm/check.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "vmm/kva.h"
#include "vmm/vmm.h"

#define PAGE      KMM_PAGE_SIZE
#define VB_PAGES  ((unsigned)(KMM_PAGE_2M / KMM_PAGE_SIZE)) /* one page table's span */
#define VB_WORDS  (VB_PAGES / 64u)
#define VB_GUARD  (VB_PAGES - 1u) /* the area's guard page */
#define VB_DYING  0x80u           /* in len[]: the range is being unmapped */
#define VB_LEN    0x7fu           /* in len[]: the range's page count */
#define VB_NO_CPU UINT32_MAX
/* "kmm-vblk": a live block starts with this. */
#define VB_CANARY UINT64_C(0x6b6d6d2d76626c6b)

_Static_assert(KMM_MAP_RAM_MAX <= VB_LEN, "a range's count fits in len[]");
_Static_assert(KMM_MAP_RAM_MAX + 1 < VB_GUARD, "a range and its guard page fit in a block");

/* A block's record: one page of the page allocator, through the direct map. */
struct vblock {
    uint64_t canary;
    uint64_t va;         /* its first address: 2 MiB aligned */
    uint64_t table;      /* its held page table */
    uint64_t self;       /* the page holding this record */
    struct vblock *next; /* on the list */
    uint32_t cpu;        /* the CPU whose current block it is, or VB_NO_CPU */
    uint32_t used;       /* taken pages, the area's guard page included */
    uint32_t ranges;     /* live ranges, DYING ones included */
    uint32_t hint;       /* every page below is taken */
    bool doomed;         /* being given back: see Lifetime above */
    uint64_t map[VB_WORDS];
    uint8_t len[VB_PAGES];
};

_Static_assert(sizeof(struct vblock) <= KMM_PAGE_SIZE, "a block's record fits in a page");

static inline bool in_block(const struct vblock *b, uint64_t va)
{
    return va - b->va < KMM_PAGE_2M;
}

/* --- the bitmap ------------------------------------------------------------------------- */

static inline bool taken(const struct vblock *b, unsigned p)
{
    return (b->map[p / 64] >> (p % 64)) & 1;
}

/* The n bits from bit (n + bit <= 64) of one word. */
static inline uint64_t word_mask(unsigned bit, unsigned n)
{
    return (n == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << n) - 1)) << bit;
}

/* Sets (or with clear, clears) the n bits from p, across words. */
static __attribute__((noinline)) void mark_words(struct vblock *b, unsigned p, unsigned n,
                                                 bool clear)
{
    while (n) {
        unsigned bit = p % 64, k = 64 - bit < n ? 64 - bit : n;
        uint64_t m = word_mask(bit, k);
        b->map[p / 64] = clear ? b->map[p / 64] & ~m : b->map[p / 64] | m;
        p += k;
        n -= k;
    }
}

/* Sets (or with clear, clears) the n bits from p. Inline: every caller
 * names clear, and the common range lies within one word. */
static inline __attribute__((always_inline)) void mark(struct vblock *b, unsigned p, unsigned n,
                                                       bool clear)
{
    if (p % 64 + n > 64) {
        mark_words(b, p, n, clear);
        return;
    }
    uint64_t m = word_mask(p % 64, n);
    if (clear)
        b->map[p / 64] &= ~m;
    else
        b->map[p / 64] |= m;
}

/* Whether the n bits from p are all clear. */
static inline bool all_clear(const struct vblock *b, unsigned p, unsigned n)
{
    if (p % 64 + n <= 64) /* within one word */
        return !(b->map[p / 64] & word_mask(p % 64, n));
    while (n) {
        unsigned bit = p % 64, k = 64 - bit < n ? 64 - bit : n;
        uint64_t m = word_mask(bit, k);
        if (b->map[p / 64] & m)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

/* First fit from hint, past the run at hint itself: the first page where
 * need pages are free, or -1. */
static __attribute__((noinline)) int scan_locked(const struct vblock *b, unsigned need)
{
    unsigned run = 0;
    for (unsigned p = b->hint; p < VB_PAGES; p++) {
        if (p % 64 == 0 && b->map[p / 64] == ~UINT64_C(0)) { /* a full word */
            run = 0;
            p += 63;
            continue;
        }
        if (taken(b, p))
            run = 0;
        else if (++run == need)
            return (int)(p + 1 - need);
    }
    return -1;
}

/* First fit: the first page from hint where need pages are free, or -1.
 * Ranges that come and go in LIFO order find room at hint itself: one look
 * at a word or two, inline. */
static inline int find_locked(const struct vblock *b, unsigned need)
{
    if (b->hint + need <= VB_GUARD && all_clear(b, b->hint, need))
        return (int)b->hint;
    return scan_locked(b, need);
}

/* Takes the n pages of a range and its guard page from p. */
static inline void take_locked(struct vblock *b, unsigned p, unsigned n)
{
    mark(b, p, n + 1, false);
    b->len[p] = (uint8_t)n;
    b->used += n + 1;
    b->ranges++;
    if (p == b->hint)
        b->hint = p + n + 1;
}

/* Gives the range at p (n pages) and its guard page back. */
static inline void give_locked(struct vblock *b, unsigned p, unsigned n)
{
    mark(b, p, n + 1, true);
    b->len[p] = 0;
    b->used -= n + 1;
    b->ranges--;
    if (p < b->hint)
        b->hint = p;
}

/* Whether b holds no range and is no CPU's, so its caller must free it
 * (it is doomed now). The kernel space's lock held. */
static bool doom_if_idle_locked(struct vblock *b)
{
    if (b->ranges || b->cpu != VB_NO_CPU || b->doomed)
        return false;
    b->doomed = true;
    return true;
}

/* --- making and freeing a block ------------------------------------------------------- */

static uint64_t vb_scan(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags)
{
    (void)ctx;
    (void)want_pages;
    (void)flags;
    return vb_drain(k);
}

KMM_INIT void vb_init(struct kmm *k)
{
    struct kmm_kva *v = &k->kva;
    v->blocks = 0;
    v->nblocks = 0;
    v->vb_shrinker_on = false;
    v->vb_shrinker = (struct kmm_shrinker){.scan = vb_scan, .name = "vmap-blocks"};
    for (unsigned c = 0; c < KMM_MAX_CPUS; c++)
        v->vb_cpu[c].cur = 0;
}

/* The tables holding a block's page table needs (vmm_lock_with_tables). */
static int count_hold(const struct mmu_space *s, const void *op)
{
    return mmu_hold_count_locked(s, *(const uint64_t *)op);
}

int vb_hold_table(struct kmm *k, uint64_t va, uint64_t *table)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    struct vmm_tables t = {0, 0};
    kmm_irqstate_t irq;
    int err = vmm_lock_with_tables(ks, &t, count_hold, &va, &irq);
    if (err)
        return err;
    uint64_t pa = mmu_hold_table_locked(&ks->mmu, va, &t);
    kmm_unlock_irqrestore(&ks->lock, irq);
    vmm_tables_release(k, &t);
    if (table)
        *table = pa;
    return KMM_OK;
}

void vb_unhold_table(struct kmm *k, uint64_t va)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, ks);
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    mmu_unhold_table_locked(&ks->mmu, va, &g);
    kmm_unlock_irqrestore(&ks->lock, irq);
    kmm_tlb_finish(&g);
}

/* A new block, on the list, no CPU's, with its first need pages (a range
 * and its guard page) taken before anybody can see it: a listed block that
 * holds no range and is no CPU's is idle, and a drain or the shrinker on
 * another CPU would free it under its maker. NULL if the window has no
 * free aligned 2 MiB or memory is short (nothing left behind). IRQs on. */
static struct vblock *make_block(struct kmm *k, unsigned need, const void *caller)
{
    struct kmm_kva *v = &k->kva;
    uint64_t va, table;
    if (kva_reserve_aligned(k, VB_PAGES - 1, VB_PAGES, KVA_VBLOCK, caller, &va) != KMM_OK)
        return 0;
    uint64_t self = kmm_page_alloc(k, 0, 0);
    if (!self || vb_hold_table(k, va, &table) != KMM_OK) {
        if (self)
            KMM_MUST(k->port, kmm_page_free(k, self, 0));
        kva_release(k, va);
        return 0;
    }
    struct vblock *b = kmm_phys_to_virt(k, self);
    __builtin_memset(b, 0, sizeof(*b));
    b->va = va;
    b->table = table;
    b->self = self;
    b->cpu = VB_NO_CPU;
    mark(b, VB_GUARD, 1, false);
    b->used = 1;
    take_locked(b, 0, need - 1); /* nobody else sees it yet */
    b->canary = VB_CANARY;
    kva_publish(k, va);

    struct kmm_aspace *ks = &k->vm.kernel;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    b->next = v->blocks;
    v->blocks = b;
    v->nblocks++;
    bool first = !v->vb_shrinker_on;
    v->vb_shrinker_on = true;
    kmm_unlock_irqrestore(&ks->lock, irq);
    if (first) /* once per instance, as the heap's: never unregistered */
        KMM_MUST(k->port, kmm_shrinker_register(k, &v->vb_shrinker));
    return b;
}

/* Unlinks the doomed block b and gives back its page table (once its
 * invalidation is complete: nothing is mapped in it, but a table goes
 * through a gather), its area and its record. Returns the pages freed.
 * IRQs on, no lock held. */
static uint64_t free_block(struct kmm *k, struct vblock *b)
{
    struct kmm_kva *v = &k->kva;
    struct kmm_aspace *ks = &k->vm.kernel;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    struct vblock **link = &v->blocks;
    while (*link != b) {
        KMM_ASSERT(k->port, *link != 0); /* a doomed block is on the list until now */
        link = &(*link)->next;
    }
    *link = b->next;
    v->nblocks--;
    kmm_unlock_irqrestore(&ks->lock, irq);

    uint64_t va = b->va, pages;
    KMM_MUST(k->port, kva_begin_free(k, va, KVA_VBLOCK, "kmm_vm_unmap_ram", 0, &pages, 0));
    uint64_t tables = kva_kernel_tables(k);
    vb_unhold_table(k, va);
    tables -= kva_kernel_tables(k);
    kva_release(k, va);
    b->canary = 0;
    KMM_MUST(k->port, kmm_page_free(k, b->self, 0));
    return 1 + tables;
}

/* --- mapping a range --------------------------------------------------------------------- */

/* Writes the leaves of n pages at va in b's held table. The kernel
 * space's lock held. */
static inline void map_locked(struct kmm *k, const struct vblock *b, uint64_t va,
                              const uint64_t *pages, uint64_t n, unsigned prot)
{
    struct mmu_space *s = &k->vm.kernel.mmu;
    mmu_held_map_locked(s, b->table, va, pages, n, prot);
    if (kmm_port_mirrors_mappings(k->port))
        vmm_pages_changed(s, va, pages, n, prot | KMM_PROT_READ);
}

/* vb_map when this CPU's current block has no room for n pages: a new
 * block with the range at its start becomes the current block of the CPU
 * this runs on now; the block it replaces is no CPU's any more and is
 * freed if it holds no range. False if no block can be made. Out of line,
 * so that the common path keeps no register for it. IRQs on. */
static __attribute__((noinline, cold)) bool map_new(struct kmm *k, const uint64_t *pages,
                                                    uint64_t n, unsigned prot, const void *caller,
                                                    uint64_t *va)
{
    struct vblock *b = make_block(k, (unsigned)n + 1, caller);
    if (!b)
        return false;
    struct kmm_aspace *ks = &k->vm.kernel;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock); /* IRQs off: this stays this CPU */
    unsigned cpu = kmm_port_cpu_id();
    struct kva_vb_cpu *c = &k->kva.vb_cpu[cpu];
    b->cpu = cpu;
    struct vblock *old = c->cur;
    c->cur = b;
    bool free_old = false;
    if (old) {
        old->cpu = VB_NO_CPU;
        free_old = doom_if_idle_locked(old);
    }
    /* The range is the maker's and the table held: the leaves are written
     * with no check left that could fail. */
    map_locked(k, b, b->va, pages, n, prot);
    kmm_unlock_irqrestore(&ks->lock, irq);
    if (free_old)
        free_block(k, old);
    *va = b->va;
    return true;
}

/* vb_map, inline so that a call with a constant count folds it. */
static inline __attribute__((always_inline)) bool map_range(struct kmm *k, const uint64_t *pages,
                                                            uint64_t n, unsigned prot,
                                                            const void *caller, uint64_t *va)
{
    struct kmm_aspace *ks = &k->vm.kernel;
    /* One hold of the kernel space's lock for the take from this CPU's
     * current block and the leaves: one restore of the interrupt flag
     * (each costs, and under QEMU's TCG each sti ends a translation
     * block). IRQs off: this stays this CPU. */
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    struct vblock *b = k->kva.vb_cpu[kmm_port_cpu_id()].cur;
    int p = b ? find_locked(b, (unsigned)n + 1) : -1;
    if (p < 0) {
        kmm_unlock_irqrestore(&ks->lock, irq);
        return map_new(k, pages, n, prot, caller, va);
    }
    take_locked(b, (unsigned)p, (unsigned)n);
    uint64_t at = b->va + (uint64_t)p * PAGE;
    map_locked(k, b, at, pages, n, prot);
    kmm_unlock_irqrestore(&ks->lock, irq);
    *va = at;
    return true;
}

bool vb_map(struct kmm *k, const uint64_t *pages, uint64_t n, unsigned prot, const void *caller,
            uint64_t *va)
{
    /* One page, the commonest request, with its count folded. */
    if (n == 1)
        return map_range(k, pages, 1, prot, caller, va);
    return map_range(k, pages, n, prot, caller, va);
}

/* --- unmapping a range -------------------------------------------------------------------- */

/* Why an unmap at page p of b is refused, when no live range of the
 * count it names starts there. The kernel space's lock held. */
static __attribute__((noinline, cold)) struct kva_refusal refusal_locked(const struct vblock *b,
                                                                         unsigned p)
{
    unsigned len = b->len[p];
    if (!len) {
        /* A range that covers p: its start is at most KMM_MAP_RAM_MAX pages back. */
        for (unsigned q = p; q-- > 0 && p - q <= KMM_MAP_RAM_MAX;) {
            unsigned ql = b->len[q] & VB_LEN;
            if (ql && q + ql > p)
                return (struct kva_refusal){"inside a range, not its start", KMM_EINVAL,
                                            KMM_MISUSE_NOT_BLOCK};
            if (ql && q + ql == p)
                return (struct kva_refusal){"the guard page of a range", KMM_EINVAL,
                                            KMM_MISUSE_NOT_BLOCK};
        }
        return (struct kva_refusal){"no range starts here (never mapped, or unmapped already)",
                                    KMM_ENOENT, KMM_MISUSE_ABSENT};
    }
    if (len & VB_DYING)
        return (struct kva_refusal){"the range is being unmapped already (double unmap)",
                                    KMM_ESTATE, KMM_MISUSE_DOUBLE_FREE};
    return (struct kva_refusal){"count is not the range's page count", KMM_EINVAL,
                                KMM_MISUSE_BAD_ORDER};
}

/* The block holding va: this CPU's current block first, else the list;
 * NULL if va lies in no block. The kernel space's lock held. */
static inline struct vblock *block_of_locked(struct kmm *k, uint64_t va)
{
    struct kmm_kva *v = &k->kva;
    struct vblock *b = v->vb_cpu[kmm_port_cpu_id()].cur;
    if (!b || !in_block(b, va))
        for (b = v->blocks; b && !in_block(b, va); b = b->next)
            ;
    return b;
}

/* Gives the DYING range of n pages at va in b back, and b with it if that
 * leaves b idle, once the invalidations in g are complete (SPEC §4). IRQs
 * on (the shootdown may wait for other CPUs), no lock held. */
static __attribute__((noinline)) int give_back_after(struct kmm *k, struct vblock *b, uint64_t va,
                                                     uint64_t n, struct kmm_tlb_gather *g)
{
    struct kmm_aspace *ks = &k->vm.kernel;
    kmm_tlb_finish(g);
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    give_locked(b, (unsigned)((va - b->va) / PAGE), (unsigned)n);
    bool idle = doom_if_idle_locked(b);
    kmm_unlock_irqrestore(&ks->lock, irq);
    if (idle)
        free_block(k, b);
    return KMM_OK;
}

/* give_back_after for the one page at va, whose leaf mmu_held_unmap_one_locked
 * said a TLB may hold (gone): its invalidation gathered here, so that the
 * common path has no gather. */
static __attribute__((noinline)) int give_back_one_after(struct kmm *k, struct vblock *b,
                                                         uint64_t va, unsigned gone)
{
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, &k->vm.kernel);
    vmm_gather_range(&g, va, PAGE, (gone & MMU_HELD_GLOBAL) != 0);
    return give_back_after(k, b, va, 1, &g);
}

/* vb_unmap, inline so that a call with a constant count folds it. One
 * hold of the kernel space's lock for the judgement, the leaves and, when
 * no TLB may hold any of them (the accessed rule, pt_leaf_cached), the
 * give-back: SPEC §4 keeps a range until its invalidations are complete,
 * and it has none. Otherwise the range is marked DYING, so that it stays
 * taken (and the block alive) until they are. */
static inline __attribute__((always_inline)) int unmap_range(struct kmm *k, uint64_t va, uint64_t n,
                                                             const char *fn, const void *caller)
{
    struct kmm_aspace *ks = &k->vm.kernel;
    struct mmu_space *s = &ks->mmu;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    struct vblock *b = block_of_locked(k, va);
    if (!b) {
        kmm_unlock_irqrestore(&ks->lock, irq);
        return VB_NOT_A_BLOCK;
    }
    unsigned p = (unsigned)((va - b->va) / PAGE);
    if (b->len[p] != n) { /* not a live range of n pages: DYING is above any count */
        struct kva_refusal no = refusal_locked(b, p);
        kmm_unlock_irqrestore(&ks->lock, irq);
        return kva_misuse(k, no.err, no.cls, fn, va, n * PAGE, no.why, caller);
    }
    struct kmm_tlb_gather g;
    unsigned gone;
    if (n == 1) {
        gone = mmu_held_unmap_one_locked(s, b->table, va);
    } else {
        kmm_tlb_gather_init(&g, ks);
        gone = mmu_held_unmap_locked(s, b->table, va, n, &g) ? MMU_HELD_CACHED : 0;
    }
    if (kmm_port_mirrors_mappings(k->port))
        vmm_mapping_changed(s, va, n * PAGE, 0, 0);
    if (gone) {
        b->len[p] = (uint8_t)(n | VB_DYING);
        kmm_unlock_irqrestore(&ks->lock, irq);
        return n == 1 ? give_back_one_after(k, b, va, gone) : give_back_after(k, b, va, n, &g);
    }
    give_locked(b, p, (unsigned)n);
    bool idle = doom_if_idle_locked(b);
    kmm_unlock_irqrestore(&ks->lock, irq);
    if (idle)
        free_block(k, b);
    return KMM_OK;
}

int vb_unmap(struct kmm *k, uint64_t va, uint64_t n, const char *fn, const void *caller)
{
    /* One page, the commonest request, with its count folded. */
    if (n == 1)
        return unmap_range(k, va, 1, fn, caller);
    return unmap_range(k, va, n, fn, caller);
}

/* --- giving blocks back ------------------------------------------------------------------- */

uint64_t vb_drain(struct kmm *k)
{
    struct kmm_kva *v = &k->kva;
    struct kmm_aspace *ks = &k->vm.kernel;
    /* CPUs' current blocks that hold no range stop being current ... */
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    for (unsigned cpu = 0; cpu < k->cpu_count; cpu++) {
        struct kva_vb_cpu *c = &v->vb_cpu[cpu];
        struct vblock *b = c->cur;
        if (b && !b->ranges) {
            b->cpu = VB_NO_CPU;
            c->cur = 0;
        }
    }
    kmm_unlock_irqrestore(&ks->lock, irq);
    /* ... then every idle block goes, one at a time (freeing takes the
     * kernel space's lock and the window's, one after the other). */
    uint64_t freed = 0;
    for (;;) {
        struct vblock *idle = 0;
        irq = kmm_lock_irqsave(&ks->lock);
        for (struct vblock *b = v->blocks; b && !idle; b = b->next)
            if (doom_if_idle_locked(b))
                idle = b;
        kmm_unlock_irqrestore(&ks->lock, irq);
        if (!idle)
            return freed;
        freed += free_block(k, idle);
    }
}

/* --- figures and the check ------------------------------------------------------------------ */

void vb_stats(struct kmm *k, struct kmm_vmalloc_stats *out)
{
    struct kmm_kva *v = &k->kva;
    struct kmm_aspace *ks = &k->vm.kernel;
    out->vmap_blocks = out->map_ram_ranges = out->map_ram_pages = out->vmap_block_free = 0;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    for (struct vblock *b = v->blocks; b; b = b->next) {
        out->vmap_blocks++;
        out->map_ram_ranges += b->ranges;
        out->map_ram_pages += b->used - 1u - b->ranges; /* less the guard pages */
        out->vmap_block_free += VB_PAGES - b->used;
    }
    kmm_unlock_irqrestore(&ks->lock, irq);
}

/* The bitmap, lengths and counters of the copy c against each other. */
static void check_bitmap(const struct vblock *c, struct kmm_check_result *r)
{
    uint64_t want[VB_WORDS] = {0};
    uint32_t used = 0, ranges = 0, first_free = VB_PAGES;
    for (unsigned p = 0; p < VB_PAGES; p++) {
        unsigned n = c->len[p] & VB_LEN;
        if (!n)
            continue;
        if (p + n + 1 > VB_GUARD + 1u || n > KMM_MAP_RAM_MAX) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "vmap block 0x%llx: range at page %u of %u pages "
                              "runs out of the block",
                              (unsigned long long)c->va, p, n);
            return;
        }
        for (unsigned q = p; q <= p + n; q++)
            want[q / 64] |= UINT64_C(1) << (q % 64);
        used += n + 1;
        ranges++;
    }
    want[VB_GUARD / 64] |= UINT64_C(1) << (VB_GUARD % 64);
    used++;
    for (unsigned p = 0; p < VB_PAGES && first_free == VB_PAGES; p++)
        if (!((want[p / 64] >> (p % 64)) & 1))
            first_free = p;
    bool same = used == c->used && ranges == c->ranges && c->hint <= first_free;
    for (unsigned w = 0; w < VB_WORDS; w++)
        same &= want[w] == c->map[w];
    if (!same)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "vmap block 0x%llx: bitmap (%u pages taken, %u ranges, hint %u) differs "
                          "from its ranges (%u taken, %u ranges, first free %u)",
                          (unsigned long long)c->va, c->used, c->ranges, c->hint, used, ranges,
                          first_free);
}

/* The copy c's pages against the kernel space's tables: a live range's
 * pages mapped unowned, every other page unmapped, the table held. */
static void check_pages(struct kmm *k, const struct vblock *c, struct kmm_check_result *r)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    uint64_t held = mmu_held_table_locked(&ks->mmu, c->va);
    kmm_unlock_irqrestore(&ks->lock, irq);
    if (held != c->table) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "vmap block 0x%llx: its page table 0x%llx is %s",
                          (unsigned long long)c->va, (unsigned long long)c->table,
                          held ? "not the held one" : "not held");
        return;
    }
    unsigned in_range = 0; /* pages left of the range being walked */
    bool dying = false;
    for (unsigned p = 0; p < VB_PAGES; p++) {
        if (c->len[p]) {
            in_range = c->len[p] & VB_LEN;
            dying = (c->len[p] & VB_DYING) != 0;
        }
        bool want = in_range > 0;
        if (in_range)
            in_range--;
        if (dying && want)
            continue; /* being unmapped: either way */
        struct kmm_vm_translation tr;
        bool mapped = kmm_vm_translate(ks, c->va + (uint64_t)p * PAGE, &tr) == KMM_OK;
        if (mapped != want || (mapped && (tr.owned || tr.page_size != KMM_PAGE_4K))) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "vmap block 0x%llx: page %u is %s",
                              (unsigned long long)c->va, p,
                              want ? "in a range but not mapped as one"
                                   : "mapped but in no range (or a guard page)");
            return;
        }
    }
}

void vb_check_area(struct kmm *k, const struct kmm_kva_area *a, struct kmm_check_result *r)
{
    struct kmm_kva *v = &k->kva;
    struct kmm_aspace *ks = &k->vm.kernel;
    struct vblock copy;
    bool found = false, sane = false;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    for (struct vblock *b = v->blocks; b && !found; b = b->next) {
        if (b->va != a->va)
            continue;
        found = true;
        sane = b->canary == VB_CANARY;
        copy = *b;
    }
    kmm_unlock_irqrestore(&ks->lock, irq);
    if (!found || !sane || a->size != (uint64_t)VB_GUARD * PAGE) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "vmap block area 0x%llx: %s",
                          (unsigned long long)a->va,
                          !found  ? "no block on the list"
                          : !sane ? "its record's canary is overwritten"
                                  : "not a block's size");
        return;
    }
    unsigned long before = r->problems;
    check_bitmap(&copy, r);
    if (r->problems == before)
        check_pages(k, &copy, r);
}

void vb_check(struct kmm *k, struct kmm_check_result *r)
{
    struct kmm_kva *v = &k->kva;
    uint64_t listed = 0, areas;
    bool slots_ok = true;
    struct kmm_aspace *ks = &k->vm.kernel;
    kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
    for (struct vblock *b = v->blocks; b; b = b->next)
        listed++;
    uint64_t nblocks = v->nblocks;
    uint64_t held = ks->mmu.counts.held;
    for (unsigned cpu = 0; cpu < k->cpu_count; cpu++) {
        const struct vblock *cur = v->vb_cpu[cpu].cur;
        if (cur)
            slots_ok &= cur->cpu == cpu && !cur->doomed;
    }
    kmm_unlock_irqrestore(&ks->lock, irq);
    irq = kva_lock(v);
    areas = v->nrec[KVA_VBLOCK];
    kva_unlock(v, irq);
    uint64_t area_holds = kva_area_holds(k);
    if (listed != nblocks || areas != nblocks || held != nblocks + area_holds || !slots_ok)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "vmap blocks: %llu listed, %llu counted, %llu areas; %llu holds on page "
                          "tables for them and %llu for areas (populated, parked or reused)%s",
                          (unsigned long long)listed, (unsigned long long)nblocks,
                          (unsigned long long)areas, (unsigned long long)held,
                          (unsigned long long)area_holds,
                          slots_ok ? "" : "; a CPU's current block names another CPU");
}
