/*
 * reclaim.c - the reclaim hooks (shrinkers): registering them, and calling
 * them when an allocation finds no memory.
 *
 * The slow path of an allocation (pmm_request_slow in zonelist.c, for
 * blocks and runs alike) calls pmm_reclaim with no kmm lock held, and never
 * for KMM_GFP_ATOMIC.
 * pmm_reclaim calls each registered shrinker once, in registration order,
 * and adds up the pages they report freed.
 *
 * Locking: the list, and the private fields of every shrinker on it, are
 * under pm->shrinker_lock. It is a leaf (nothing is taken while it is held)
 * and it is never held while a shrinker runs: a shrinker frees pages, which
 * takes zone locks, and may allocate. So reclaim walks the list one step at
 * a time:
 *
 *     lock;   s = the next shrinker not running; s->running = true;   unlock
 *     s->scan(...)                                                  (no lock)
 *     lock;   s->running = false; the successor of s; ...
 *
 * Implementation subtleties:
 *  - A shrinker unregistered while it runs: unregister unlinks it at once,
 *    then waits (polling under the lock) until running is clear, so the
 *    reclaim that runs it still owns it when scan returns. Its successor is
 *    then no longer s->next (which may point at a shrinker freed since) but
 *    the first one on the list with a registration number above s->seq:
 *    the list is in ascending seq, so no shrinker is skipped or called twice
 *    by one walk, whatever is registered or unregistered meanwhile.
 *  - running doubles as the recursion guard: a shrinker that allocates
 *    without KMM_GFP_ATOMIC re-enters reclaim, which skips it (and every
 *    other shrinker running), so nesting ends after the list's length; and
 *    a shrinker is never called by two CPUs at once.
 *  - Pages a shrinker frees one at a time land in this CPU's cache; the slow
 *    path retries in the zones, so reclaim drains this CPU's caches after a
 *    walk that freed anything.
 *  - Misuse (registering twice, unregistering an unknown shrinker) is judged
 *    by walking the list, never by trusting the private fields of the
 *    caller's structure, which may be uninitialised before the first
 *    register.
 */
#include "internal.h"

#include "pmm/pmm.h"

KMM_INIT void pmm_reclaim_init(struct kmm_pmm *pm)
{
    kmm_lock_init(&pm->shrinker_lock);
    pm->shrinker_head = pm->shrinker_tail = NULL;
    pm->shrinker_seq = 0;
    pm->shrinker_count = 0;
}

/* s, or the first shrinker after it that is not running; NULL if none. */
static struct kmm_shrinker *idle_from_locked(struct kmm_shrinker *s)
{
    while (s && s->state.running)
        s = s->state.next;
    return s;
}

/* The first shrinker on the list registered after seq. */
static struct kmm_shrinker *first_after_locked(struct kmm_pmm *pm, uint64_t seq)
{
    struct kmm_shrinker *s = pm->shrinker_head;
    while (s && s->state.seq <= seq)
        s = s->state.next;
    return s;
}

/* Whether s is on the list (and the link before it, for unlinking). */
static bool find_locked(struct kmm_pmm *pm, const struct kmm_shrinker *s,
                        struct kmm_shrinker **prev)
{
    struct kmm_shrinker *p = NULL;
    for (struct kmm_shrinker *it = pm->shrinker_head; it; p = it, it = it->state.next) {
        if (it == s) {
            *prev = p;
            return true;
        }
    }
    return false;
}

uint64_t pmm_reclaim(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    struct kmm_pmm *pm = &k->pmm;
    if (flags & KMM_GFP_ATOMIC)
        return 0; /* the slow path never asks; stay harmless if it did */
    uint64_t want = UINT64_C(1) << order, total = 0;
    if (want < KMM_SHRINK_BATCH)
        want = KMM_SHRINK_BATCH;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->shrinker_lock);
    pm->reclaim_calls++;
    struct kmm_shrinker *sh = idle_from_locked(pm->shrinker_head);
    while (sh) {
        sh->state.running = true;
        uint64_t (*scan)(struct kmm *, void *, uint64_t, kmm_gfp_t) = sh->scan;
        void *ctx = sh->ctx;
        kmm_unlock_irqrestore(&pm->shrinker_lock, s);
        uint64_t got = scan(k, ctx, want, flags);
        s = kmm_lock_irqsave(&pm->shrinker_lock);
        sh->state.running = false;
        sh->state.calls++;
        sh->state.freed += got;
        pm->shrinker_calls++;
        pm->reclaimed_pages += got;
        total += got;
        sh = idle_from_locked(sh->state.linked ? sh->state.next
                                               : first_after_locked(pm, sh->state.seq));
    }
    kmm_unlock_irqrestore(&pm->shrinker_lock, s);
    if (total)
        kmm_page_drain_cpu(k);
    return total;
}

/* A rejected register or unregister: counted, logged, error returned.
 * name is read only from a structure the caller evidently still owns. */
static int shrinker_misuse(struct kmm *k, const char *fn, const struct kmm_shrinker *s,
                           const char *name, enum kmm_misuse what, int err, const char *why,
                           const void *caller)
{
    if (name)
        return kmm_misuse(k, KMM_LAYER_RECLAIM, what, err, caller, "%s(%p \"%s\"): %s", fn,
                          (const void *)s, name, why);
    return kmm_misuse(k, KMM_LAYER_RECLAIM, what, err, caller, "%s(%p): %s", fn, (const void *)s,
                      why);
}

int kmm_shrinker_register(struct kmm *k, struct kmm_shrinker *s)
{
    const void *caller = __builtin_return_address(0);
    struct kmm_pmm *pm = &k->pmm;
    if (!s || !s->scan)
        return shrinker_misuse(k, "kmm_shrinker_register", s, s ? s->name : NULL,
                               KMM_MISUSE_BAD_ARG, KMM_EINVAL,
                               s ? "no scan function" : "NULL shrinker", caller);
    struct kmm_shrinker *prev;
    kmm_irqstate_t st = kmm_lock_irqsave(&pm->shrinker_lock);
    bool dup = find_locked(pm, s, &prev);
    if (!dup) {
        s->state.next = NULL;
        s->state.seq = ++pm->shrinker_seq;
        s->state.calls = 0;
        s->state.freed = 0;
        s->state.linked = true;
        s->state.running = false;
        if (pm->shrinker_tail)
            pm->shrinker_tail->state.next = s;
        else
            pm->shrinker_head = s;
        pm->shrinker_tail = s;
        pm->shrinker_count++;
    }
    kmm_unlock_irqrestore(&pm->shrinker_lock, st);
    if (dup)
        return shrinker_misuse(k, "kmm_shrinker_register", s, s->name, KMM_MISUSE_BUSY, KMM_ESTATE,
                               "registered already", caller);
    return KMM_OK;
}

/* Spins until no reclaim is inside s->scan. s is off the list already, so
 * no new call can start. */
static void wait_until_idle(struct kmm_pmm *pm, const struct kmm_shrinker *s)
{
    for (;;) {
        kmm_irqstate_t st = kmm_lock_irqsave(&pm->shrinker_lock);
        bool running = s->state.running;
        kmm_unlock_irqrestore(&pm->shrinker_lock, st);
        if (!running)
            return;
        for (unsigned i = 0; i < 64; i++)
            __builtin_ia32_pause();
    }
}

int kmm_shrinker_unregister(struct kmm *k, struct kmm_shrinker *s)
{
    const void *caller = __builtin_return_address(0);
    struct kmm_pmm *pm = &k->pmm;
    if (!s)
        return shrinker_misuse(k, "kmm_shrinker_unregister", s, NULL, KMM_MISUSE_BAD_ARG,
                               KMM_EINVAL, "NULL shrinker", caller);
    struct kmm_shrinker *prev;
    kmm_irqstate_t st = kmm_lock_irqsave(&pm->shrinker_lock);
    bool found = find_locked(pm, s, &prev);
    if (found) {
        if (prev)
            prev->state.next = s->state.next;
        else
            pm->shrinker_head = s->state.next;
        if (pm->shrinker_tail == s)
            pm->shrinker_tail = prev;
        s->state.linked = false;
        pm->shrinker_count--;
    }
    kmm_unlock_irqrestore(&pm->shrinker_lock, st);
    if (!found)
        return shrinker_misuse(k, "kmm_shrinker_unregister", s, NULL, KMM_MISUSE_ABSENT, KMM_ENOENT,
                               "not registered", caller);
    wait_until_idle(pm, s);
    return KMM_OK;
}

void pmm_reclaim_stats(struct kmm_pmm *pm, struct kmm_page_stats *out)
{
    kmm_irqstate_t st = kmm_lock_irqsave(&pm->shrinker_lock);
    out->reclaim_calls = pm->reclaim_calls;
    out->shrinker_calls = pm->shrinker_calls;
    out->reclaimed_pages = pm->reclaimed_pages;
    out->shrinkers = pm->shrinker_count;
    kmm_unlock_irqrestore(&pm->shrinker_lock, st);
}

bool pmm_shrinker_info(struct kmm_pmm *pm, uint64_t after_seq, struct pmm_shrinker_info *out)
{
    kmm_irqstate_t st = kmm_lock_irqsave(&pm->shrinker_lock);
    const struct kmm_shrinker *s = first_after_locked(pm, after_seq);
    if (s) {
        /* Copied under the lock: the name is the caller's, valid only while
         * the shrinker is registered. */
        const char *name = s->name ? s->name : "?";
        size_t i = 0;
        for (; i + 1 < sizeof(out->name) && name[i]; i++)
            out->name[i] = name[i];
        out->name[i] = '\0';
        out->seq = s->state.seq;
        out->calls = s->state.calls;
        out->freed = s->state.freed;
    }
    kmm_unlock_irqrestore(&pm->shrinker_lock, st);
    return s != NULL;
}
