/*
 * big.c - blocks aligned beyond what the heap can align: more than a page
 * for a block over KMM_HEAP_ALIGN_MAX (4 MiB), which the heap serves from
 * vmalloc (page aligned only), or an alignment over KMM_HEAP_ALIGN_MAX
 * itself (posix_memalign(&p, 1 GiB, n) for a huge-page arena, say).
 *
 * Such a block is a run of the page allocator (kmm_run_alloc takes any
 * alignment), used through the direct map, exactly as many pages as asked
 * for; an alignment above the direct map's own is refused (ENOMEM). A table keyed by address
 * remembers each run's page count, so that free, realloc and malloc_usable_size know it: the heap
 * would reject the pointer. The table is open addressing with linear probing over memory mapped
 * from the host, grown by doubling; free looks in it only for pointers aligned to PM_BIG_MIN_ALIGN
 * while any big block lives.
 *
 * Lock order (pm.h): big_lock comes before the gate; kmm calls are made with
 * it dropped.
 */
#define _GNU_SOURCE
#include "pm.h"

#include <pthread.h>
#include <sys/mman.h>

#include <kmm/page.h>

struct big_entry {
    uintptr_t va; /* 0: empty; BIG_TOMB: deleted */
    size_t pages;
};

#define BIG_TOMB        ((uintptr_t)1)
#define BIG_TABLE_FIRST 256u /* entries of the first table */

atomic_size_t pm_big_live;

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static struct big_entry *table; /* cap entries, a power of two */
static size_t cap, used;        /* used: live entries and tombstones */

/* The forker holds big_lock across the fork, and may still allocate in
 * other fork handlers: it alone then (cpu.c, pm_forking). */
void pm_big_lock(void)
{
    if (!pm_forking())
        pthread_mutex_lock(&big_lock);
}

void pm_big_unlock(void)
{
    if (!pm_forking())
        pthread_mutex_unlock(&big_lock);
}

void pm_big_lock_reset(void)
{
    big_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

static size_t slot_of(uintptr_t va, size_t mask)
{
    return (size_t)(((uint64_t)va >> 13) * UINT64_C(0x9e3779b97f4a7c15) >> 20) & mask;
}

/* The entry of va, or NULL. big_lock held. */
static struct big_entry *find_locked(uintptr_t va)
{
    if (!table)
        return NULL;
    for (size_t i = slot_of(va, cap - 1);; i = (i + 1) & (cap - 1)) {
        if (table[i].va == va)
            return &table[i];
        if (table[i].va == 0)
            return NULL;
    }
}

/* Makes room for one more entry: a table twice as large (or as large, to
 * sweep tombstones) when more than half is used. False if the host refuses
 * the memory. big_lock held. */
static bool reserve_locked(void)
{
    if (table && (used + 1) * 2 <= cap)
        return true;
    size_t live = atomic_load(&pm_big_live);
    size_t new_cap = !table ? BIG_TABLE_FIRST : (live + 1) * 4 > cap ? cap * 2 : cap;
    struct big_entry *t = mmap(NULL, new_cap * sizeof(*t), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED)
        return false;
    for (size_t i = 0; table && i < cap; i++) {
        if (table[i].va <= BIG_TOMB)
            continue;
        size_t j = slot_of(table[i].va, new_cap - 1);
        while (t[j].va)
            j = (j + 1) & (new_cap - 1);
        t[j] = table[i];
    }
    if (table)
        munmap(table, cap * sizeof(*table));
    table = t;
    cap = new_cap;
    used = live;
    return true;
}

static bool insert(uintptr_t va, size_t pages)
{
    pm_big_lock();
    bool ok = reserve_locked();
    if (ok) {
        size_t i = slot_of(va, cap - 1);
        while (table[i].va > BIG_TOMB)
            i = (i + 1) & (cap - 1);
        if (table[i].va == 0)
            used++;
        table[i] = (struct big_entry){va, pages};
        atomic_fetch_add(&pm_big_live, 1);
    }
    pm_big_unlock();
    return ok;
}

void *pm_big_alloc(size_t align, size_t size)
{
    if (size > KMM_HEAP_SIZE_MAX)
        return NULL;
    size_t pages = size ? (size + PM_PAGE - 1) / PM_PAGE : 1;
    enum pm_how how = pm_enter(); /* the instance exists from here on */
    /* A run aligned physically is aligned virtually only as far as the
     * direct map's base is (1 GiB or more, hosted). */
    uint64_t pa = how == PM_BOOT || align > pm_direct_map_align()
                      ? 0
                      : kmm_run_alloc(pm_k, pages, align, 0, 0);
    pm_leave(how);
    if (!pa)
        return NULL;
    void *p = pm_phys_to_virt(pa);
    if (insert((uintptr_t)p, pages))
        return p;
    how = pm_enter();
    kmm_run_free(pm_k, pa, pages);
    pm_leave(how);
    return NULL;
}

bool pm_big_free(const void *p)
{
    pm_big_lock();
    struct big_entry *e = find_locked((uintptr_t)p);
    size_t pages = e ? e->pages : 0;
    if (e) {
        e->va = BIG_TOMB;
        atomic_fetch_sub(&pm_big_live, 1);
    }
    pm_big_unlock();
    if (!pages)
        return false;
    enum pm_how how = pm_enter();
    kmm_run_free(pm_k, pm_virt_to_phys(p), pages);
    pm_leave(how);
    return true;
}

size_t pm_big_size(const void *p)
{
    pm_big_lock();
    const struct big_entry *e = find_locked((uintptr_t)p);
    size_t pages = e ? e->pages : 0;
    pm_big_unlock();
    return pages * PM_PAGE;
}
