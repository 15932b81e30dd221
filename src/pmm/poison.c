/*
 * poison.c - page poisoning (kmm_page_debug): while it is on, every block
 * that becomes free in a zone is filled with KMM_PAGE_POISON_BYTE, and a
 * block handed out by kmm_page_alloc, kmm_pages_alloc or kmm_run_alloc is
 * checked for it before the caller gets it: a byte that differs was
 * written after the page was freed. kmm_check verifies every free block.
 *
 * The invariant that makes the check exact: while a zone's `poison` is
 * set, every page of every FREE block of the zone holds the pattern. The
 * one place a block becomes FREE (pmm_free_block_locked, under the zone
 * lock) fills it when the flag is set; switching on fills the blocks
 * already free under the same lock hold that sets the flag. Pages in the
 * per-CPU caches are not FREE and not poisoned: while poisoning is on the
 * caches are bypassed (every CPU's drain flag stays raised, so the inline
 * cache paths refuse and the full paths in pcp.c skip the cache), and a
 * cache emptied into its zone goes through pmm_free_block_locked.
 *
 * An allocation checks its block only if poison_seq read the same odd
 * value before its request and after it: every zone was poisoning
 * throughout, so the block it took was filled when it was freed.
 *
 * Lock order: the growth lock (which serialises the switches with each
 * other and with section growth), then one zone lock at a time.
 */
#include "internal.h"

#include "pmm/pmm.h"

#include <kmm/check.h>

/* The pattern as a word, for the word-wide fill and compare. */
#define POISON_WORD (UINT64_C(0x0101010101010101) * KMM_PAGE_POISON_BYTE)

/* The instance a page allocator belongs to (for its direct map). */
static struct kmm *instance_of(struct kmm_pmm *pm)
{
    return (struct kmm *)((char *)pm - offsetof(struct kmm, pmm));
}

static uint64_t *page_words(struct kmm_pmm *pm, uint64_t pfn)
{
    return kmm_phys_to_virt(instance_of(pm), pfn << KMM_PAGE_SHIFT);
}

void pmm_poison_fill(struct kmm_pmm *pm, uint64_t pfn, unsigned order)
{
    uint64_t *w = page_words(pm, pfn);
    size_t n = ((size_t)KMM_PAGE_SIZE << order) / sizeof(uint64_t);
    for (size_t i = 0; i < n; i++)
        w[i] = POISON_WORD;
}

void pmm_poison_free_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order)
{
    pmm_poison_fill(pm, pfn, order);
    pmm_merge_block_locked(pm, z, pfn, order);
}

/* The byte offset of the first byte of pages [pfn, pfn + pages) that is
 * not the pattern, or -1 if they all are. */
static int64_t first_bad(struct kmm_pmm *pm, uint64_t pfn, uint64_t pages)
{
    const uint64_t *w = page_words(pm, pfn);
    size_t n = (size_t)(pages << KMM_PAGE_SHIFT) / sizeof(uint64_t);
    for (size_t i = 0; i < n; i++) {
        if (w[i] == POISON_WORD)
            continue;
        const uint8_t *b = (const uint8_t *)&w[i];
        size_t j = 0;
        while (b[j] == KMM_PAGE_POISON_BYTE)
            j++;
        return (int64_t)(i * sizeof(uint64_t) + j);
    }
    return -1;
}

void pmm_poison_verify_slow(struct kmm *k, unsigned seq, uint64_t pa, uint64_t pages,
                            const char *fn, const void *caller)
{
    struct kmm_pmm *pm = &k->pmm;
    if (atomic_load_explicit(&pm->poison_seq, memory_order_acquire) != seq)
        return;
    int64_t bad = first_bad(pm, pa >> KMM_PAGE_SHIFT, pages);
    if (bad < 0)
        return;
    const uint8_t *b = kmm_phys_to_virt(k, pa);
    uint64_t page = pa + ((uint64_t)bad & ~(KMM_PAGE_SIZE - 1));
    uint64_t off = (uint64_t)bad & (KMM_PAGE_SIZE - 1);
    kmm_misuse(k, KMM_LAYER_PAGE, KMM_MISUSE_USE_AFTER_FREE, KMM_OK, caller,
               "%s: page 0x%llx was written after it was freed: byte 0x%02x at offset 0x%llx "
               "(poison 0x%02x); handed out all the same",
               fn, (unsigned long long)page, b[bad], (unsigned long long)off, KMM_PAGE_POISON_BYTE);
}

/* Fills every free block of z. Zone lock held. */
static void poison_zone_locked(struct kmm_pmm *pm, struct kmm_zone *z)
{
    for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
        for (uint32_t pfn = z->free_head[o]; pfn != KMM_PFN_NONE; pfn = pmm_frame(pm, pfn)->next)
            pmm_poison_fill(pm, pfn, o);
}

int kmm_page_debug(struct kmm *k, unsigned flags)
{
    struct kmm_pmm *pm = &k->pmm;
    if (flags & ~KMM_PAGE_DEBUG_POISON)
        return kmm_misuse(k, KMM_LAYER_PAGE, KMM_MISUSE_BAD_FLAGS, KMM_EINVAL,
                          __builtin_return_address(0), "kmm_page_debug(0x%x): unknown flags",
                          flags);
    bool on = flags & KMM_PAGE_DEBUG_POISON;
    kmm_irqstate_t g = kmm_lock_irqsave(&pm->grow.lock);
    unsigned seq = atomic_load_explicit(&pm->poison_seq, memory_order_relaxed);
    bool was = seq & 1;
    if (on != was) {
        /* On: the zones first, then the sequence (an allocation that sees
         * it odd finds every zone poisoned). Off: the sequence first. */
        if (!on)
            atomic_store_explicit(&pm->poison_seq, seq + 1, memory_order_release);
        for (unsigned n = 0; n < pm->node_count; n++) {
            for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
                struct kmm_zone *z = &pm->zones[n][zi];
                kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
                if (on)
                    poison_zone_locked(pm, z);
                z->poison = on;
                kmm_unlock_irqrestore(&z->lock, s);
            }
        }
        if (on) {
            atomic_store_explicit(&pm->poison_seq, seq + 1, memory_order_release);
            /* Every CPU empties its caches at its next call, and keeps its
             * flag raised while poisoning is on (pcp.c). */
            for (unsigned c = 0; c < pm->cpu_count; c++)
                atomic_store_explicit(&pm->pcp[c].drain, 1, memory_order_relaxed);
        }
    }
    kmm_unlock_irqrestore(&pm->grow.lock, g);
    return was ? KMM_PAGE_DEBUG_POISON : 0;
}

void pmm_poison_check(struct kmm *k, struct kmm_check_result *r)
{
    struct kmm_pmm *pm = &k->pmm;
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
            const struct kmm_zone *z = &pm->zones[n][zi];
            if (!z->poison)
                continue;
            for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++) {
                uint64_t seen = 0;
                for (uint32_t pfn = z->free_head[o];
                     pfn != KMM_PFN_NONE && seen <= z->free_blocks[o];
                     pfn = pmm_frame(pm, pfn)->next, seen++) {
                    int64_t bad = first_bad(pm, pfn, UINT64_C(1) << o);
                    if (bad < 0)
                        continue;
                    uint64_t page =
                        ((uint64_t)pfn << KMM_PAGE_SHIFT) + ((uint64_t)bad & ~(KMM_PAGE_SIZE - 1));
                    uint64_t off = (uint64_t)bad & (KMM_PAGE_SIZE - 1);
                    kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                      "pmm: free page 0x%llx was written after it was freed "
                                      "(offset 0x%llx is not the poison)",
                                      (unsigned long long)page, (unsigned long long)off);
                }
            }
        }
    }
}
