/*
 * machine.c - the hosted port: simulated machines over a memfd (hosted.h).
 *
 * Lock order: a machine's log_lock and tlb_lock are leaves; the library may
 * call into the port with its own locks held, never the other way round.
 */
#define _GNU_SOURCE
#include "hosted.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

_Thread_local unsigned hosted_cpu;
_Thread_local int hosted_irqs_enabled = 1;
_Thread_local int hosted_preempt_depth;

/* Which thread holds which CPU: 0 free, 1 held. */
static atomic_int cpu_held[KMM_MAX_CPUS];
static _Thread_local bool cpu_entered;

#define GIB  (UINT64_C(1) << 30)
#define MIB2 (UINT64_C(2) << 20)

struct hosted_machine {
    struct kmm_port port;
    int fd;            /* the memfd holding physical memory, -1 if anonymous */
    bool anonymous;    /* RAM is anonymous private memory (no memfd, no mirror) */
    bool no_tlb_log;   /* TLB requests are not recorded */
    bool no_huge_hint; /* anonymous RAM without MADV_HUGEPAGE */
    uint64_t phys_end; /* end of simulated physical memory (the memfd's size) */
    void *reserve;     /* the direct-map reservation as mmap returned it */
    size_t reserve_len;
    uintptr_t mirror; /* the mirror window, 0 if none */
    uint64_t mirror_size;
    atomic_ulong mirror_ignored;
    /* A fresh mirror's pages that hold an earlier mapping's data: a bit per
     * page of the window, set by an unmap, cleared (and the page zeroed) by
     * the next map. */
    _Atomic uint64_t *stale;
    size_t stale_bytes;

    unsigned node_count;
    struct hosted_node_range *node_ranges;
    size_t node_range_count;
    unsigned cpu_node[KMM_MAX_CPUS];

    atomic_ullong seq;
    pthread_mutex_t tlb_lock;
    struct hosted_tlb_event *tlb_log; /* HOSTED_TLB_LOG_MAX entries */
    size_t tlb_count;
    unsigned long tlb_dropped;
    void (*tlb_observer)(void *ctx, const struct hosted_tlb_event *e);
    void *tlb_observer_ctx;

    pthread_mutex_t log_lock;
    bool echo_log;
    void (*log_hook)(void *ctx, int level, const char *line);
    void *log_ctx;
    unsigned long log_counts[KMM_LOG_DEBUG + 1];
    char last_error[256];

    jmp_buf *panic_env;
    char panic_msg[256];
};

/* Reserves len bytes of address space aligned to align, PROT_NONE. */
static void *reserve_aligned(size_t len, size_t align, void **raw, size_t *raw_len)
{
    size_t total = len + align;
    char *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    *raw = p;
    *raw_len = total;
    return (void *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
}

static bool map_ram(struct hosted_machine *m, uint64_t base, uint64_t end)
{
    base &= ~(KMM_PAGE_SIZE - 1);
    end = (end + KMM_PAGE_SIZE - 1) & ~(KMM_PAGE_SIZE - 1);
    if (end <= base)
        return true;
    void *want = (void *)(m->port.direct_map + base);
    if (m->anonymous) {
        void *got = mmap(want, end - base, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        if (got != want)
            return false;
        /* A hint: without THP the RAM is only slower. */
        if (!m->no_huge_hint)
            (void)madvise(want, end - base, MADV_HUGEPAGE);
        return true;
    }
    void *got = mmap(want, end - base, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED | MAP_NORESERVE, m->fd, (off_t)base);
    return got == want;
}

static bool setup_numa(struct hosted_machine *m, const struct hosted_machine_config *cfg)
{
    m->node_count = cfg->node_count > 1 ? cfg->node_count : 1;
    if (m->node_count > KMM_MAX_NODES)
        return false;
    if (cfg->node_range_count) {
        m->node_ranges = calloc(cfg->node_range_count, sizeof(*m->node_ranges));
        if (!m->node_ranges)
            return false;
        memcpy(m->node_ranges, cfg->node_ranges, cfg->node_range_count * sizeof(*m->node_ranges));
        m->node_range_count = cfg->node_range_count;
    }
    for (size_t c = 0; c < cfg->cpu_node_count && c < KMM_MAX_CPUS; c++)
        m->cpu_node[c] = cfg->cpu_node[c] < m->node_count ? cfg->cpu_node[c] : 0;
    return true;
}

struct hosted_machine *hosted_machine_create(const struct hosted_machine_config *cfg)
{
    struct hosted_machine *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->fd = -1;
    pthread_mutex_init(&m->tlb_lock, NULL);
    pthread_mutex_init(&m->log_lock, NULL);
    m->echo_log = cfg->echo_log;
    m->log_hook = cfg->log_hook;
    m->log_ctx = cfg->log_ctx;
    m->anonymous = cfg->anonymous;
    m->no_tlb_log = cfg->no_tlb_log;
    m->port.fresh_mirror = cfg->fresh_mirror; /* the window shows memory of its own */
    m->no_huge_hint = cfg->no_huge_hint;
    m->port.machine = m;
    for (size_t i = 0; i < cfg->ram_count; i++) {
        uint64_t end = cfg->ram[i].base + cfg->ram[i].length;
        if (end > m->phys_end)
            m->phys_end = end;
    }
    m->phys_end = (m->phys_end + KMM_PAGE_SIZE - 1) & ~(KMM_PAGE_SIZE - 1);
    if (m->phys_end == 0)
        m->phys_end = KMM_PAGE_SIZE;
    m->tlb_log = calloc(HOSTED_TLB_LOG_MAX, sizeof(*m->tlb_log));
    if (!m->tlb_log || !setup_numa(m, cfg))
        goto fail;

    /* A window that shows the RAM maps the memfd, which anonymous RAM has
     * not; a fresh window is only for anonymous RAM. */
    bool window_needs_memfd = m->anonymous && cfg->mirror_size && !m->port.fresh_mirror;
    if (window_needs_memfd || (m->port.fresh_mirror && !m->anonymous)) {
        errno = EINVAL;
        goto fail;
    }
    if (!m->anonymous) {
        m->fd = memfd_create("kmm-physical-memory", MFD_CLOEXEC);
        if (m->fd < 0 || ftruncate(m->fd, (off_t)m->phys_end) != 0)
            goto fail;
    }
    /* The window covers [0, phys_end) rounded to 1 GiB and is itself 1 GiB
     * aligned, so physical and direct-map addresses share their low 30 bits
     * (as a kernel's direct map with 1 GiB pages would). */
    uint64_t window = (m->phys_end + GIB - 1) & ~(GIB - 1);
    void *base = reserve_aligned(window, GIB, &m->reserve, &m->reserve_len);
    if (!base)
        goto fail;
    m->port.direct_map = (uintptr_t)base;
    for (size_t i = 0; i < cfg->ram_count; i++)
        if (cfg->ram[i].length &&
            !map_ram(m, cfg->ram[i].base, cfg->ram[i].base + cfg->ram[i].length))
            goto fail;

    if (cfg->mirror_size) {
        void *raw;
        size_t raw_len;
        m->mirror_size = (cfg->mirror_size + MIB2 - 1) & ~(MIB2 - 1);
        void *w = reserve_aligned(m->mirror_size, MIB2, &raw, &raw_len);
        if (!w)
            goto fail;
        /* Trim the alignment slack so the window is exactly its own size. */
        uintptr_t lo = (uintptr_t)raw, wb = (uintptr_t)w;
        if (wb > lo)
            munmap(raw, wb - lo);
        if (lo + raw_len > wb + m->mirror_size)
            munmap((void *)(wb + m->mirror_size), lo + raw_len - (wb + m->mirror_size));
        m->mirror = wb;
        if (m->port.fresh_mirror) {
            m->stale_bytes = (m->mirror_size / KMM_PAGE_SIZE + 63) / 64 * 8;
            void *bits = mmap(NULL, m->stale_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (bits == MAP_FAILED)
                goto fail;
            m->stale = bits;
        }
    }
    return m;
fail:
    hosted_machine_destroy(m);
    return NULL;
}

struct hosted_machine *hosted_machine_from_map(const struct kmm_region *map, size_t n,
                                               uint64_t mirror_size)
{
    struct kmm_region *ram = calloc(n ? n : 1, sizeof(*ram));
    if (!ram)
        return NULL;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t t = map[i].type;
        if (t == KMM_MEM_USABLE || t == KMM_MEM_BOOTLOADER_RECLAIMABLE ||
            t == KMM_MEM_ACPI_RECLAIMABLE)
            ram[count++] = map[i];
    }
    struct hosted_machine_config cfg = {.ram = ram, .ram_count = count, .mirror_size = mirror_size};
    struct hosted_machine *m = hosted_machine_create(&cfg);
    free(ram);
    return m;
}

void hosted_machine_destroy(struct hosted_machine *m)
{
    if (!m)
        return;
    if (m->reserve)
        munmap(m->reserve, m->reserve_len);
    if (m->mirror)
        munmap((void *)m->mirror, m->mirror_size);
    if (m->stale)
        munmap((void *)m->stale, m->stale_bytes);
    if (m->fd >= 0)
        close(m->fd);
    pthread_mutex_destroy(&m->tlb_lock);
    pthread_mutex_destroy(&m->log_lock);
    free(m->node_ranges);
    free(m->tlb_log);
    free(m);
}

struct kmm_port *hosted_machine_port(struct hosted_machine *m)
{
    return &m->port;
}

void hosted_machine_accessed_rule(struct hosted_machine *m, bool on)
{
    m->port.skip_unaccessed = on;
}

uintptr_t hosted_machine_direct_map(const struct hosted_machine *m)
{
    return m->port.direct_map;
}

uint64_t hosted_machine_phys_end(const struct hosted_machine *m)
{
    return m->phys_end;
}

void hosted_machine_mirror_window(const struct hosted_machine *m, uint64_t *base, uint64_t *size)
{
    *base = m->mirror;
    *size = m->mirror ? m->mirror_size : 0;
}

unsigned long hosted_machine_mirror_ignored(const struct hosted_machine *m)
{
    return atomic_load(&((struct hosted_machine *)m)->mirror_ignored);
}

/* --- CPUs ---------------------------------------------------------------- */

bool hosted_cpu_enter(unsigned cpu)
{
    if (cpu >= KMM_MAX_CPUS)
        return false;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&cpu_held[cpu], &expected, 1))
        return false;
    if (cpu_entered)
        atomic_store(&cpu_held[hosted_cpu], 0);
    hosted_cpu = cpu;
    cpu_entered = true;
    return true;
}

void hosted_cpu_exit(void)
{
    if (!cpu_entered)
        return;
    atomic_store(&cpu_held[hosted_cpu], 0);
    cpu_entered = false;
    hosted_cpu = 0;
}

/* --- TLB ------------------------------------------------------------------- */

uint64_t hosted_machine_seq(struct hosted_machine *m)
{
    return atomic_fetch_add(&m->seq, 1) + 1;
}

static void tlb_record(struct kmm_port *p, enum hosted_tlb_op op, uint64_t root, uint64_t va,
                       uint64_t len, bool global)
{
    struct hosted_machine *m = p->machine;
    if (m->no_tlb_log)
        return;
    struct hosted_tlb_event e = {.seq = hosted_machine_seq(m),
                                 .cpu = hosted_cpu,
                                 .op = op,
                                 .root = root,
                                 .va = va,
                                 .len = len,
                                 .global = global};
    pthread_mutex_lock(&m->tlb_lock);
    if (m->tlb_count < HOSTED_TLB_LOG_MAX)
        m->tlb_log[m->tlb_count++] = e;
    else
        m->tlb_dropped++;
    void (*fn)(void *, const struct hosted_tlb_event *) = m->tlb_observer;
    void *ctx = m->tlb_observer_ctx;
    pthread_mutex_unlock(&m->tlb_lock);
    if (fn)
        fn(ctx, &e);
}

void hosted_tlb_observe(struct hosted_machine *m,
                        void (*fn)(void *ctx, const struct hosted_tlb_event *e), void *ctx)
{
    pthread_mutex_lock(&m->tlb_lock);
    m->tlb_observer = fn;
    m->tlb_observer_ctx = ctx;
    pthread_mutex_unlock(&m->tlb_lock);
}

void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va)
{
    tlb_record(p, HOSTED_TLB_FLUSH_PAGE, 0, va, KMM_PAGE_SIZE, false);
}

void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len)
{
    tlb_record(p, HOSTED_TLB_FLUSH_RANGE, 0, va, len, false);
}

void kmm_port_tlb_flush_all(struct kmm_port *p, bool global)
{
    tlb_record(p, HOSTED_TLB_FLUSH_ALL, 0, 0, 0, global);
}

void kmm_port_tlb_shootdown(struct kmm_port *p, uint64_t root, uint64_t va, uint64_t len,
                            bool global)
{
    tlb_record(p, HOSTED_TLB_SHOOTDOWN, root, va, len, global);
}

void kmm_port_load_root(struct kmm_port *p, uint64_t root)
{
    tlb_record(p, HOSTED_TLB_LOAD_ROOT, root, 0, 0, false);
}

size_t hosted_tlb_log_count(const struct hosted_machine *m)
{
    struct hosted_machine *mm = (struct hosted_machine *)m;
    pthread_mutex_lock(&mm->tlb_lock);
    size_t n = mm->tlb_count;
    pthread_mutex_unlock(&mm->tlb_lock);
    return n;
}

struct hosted_tlb_event hosted_tlb_log_get(const struct hosted_machine *m, size_t i)
{
    struct hosted_machine *mm = (struct hosted_machine *)m;
    pthread_mutex_lock(&mm->tlb_lock);
    struct hosted_tlb_event e = i < mm->tlb_count ? mm->tlb_log[i] : (struct hosted_tlb_event){0};
    pthread_mutex_unlock(&mm->tlb_lock);
    return e;
}

unsigned long hosted_tlb_log_dropped(const struct hosted_machine *m)
{
    return m->tlb_dropped;
}

void hosted_tlb_log_clear(struct hosted_machine *m)
{
    pthread_mutex_lock(&m->tlb_lock);
    m->tlb_count = 0;
    m->tlb_dropped = 0;
    pthread_mutex_unlock(&m->tlb_lock);
}

/* --- Mirroring ------------------------------------------------------------- */

/* The stale bits of the window's pages [first, first + n): set (an unmap),
 * or cleared with each page that had one zeroed (a map; the range is
 * writable by then). Atomic word by word: CPUs change disjoint ranges
 * whose bits may share a word. */

/* The mask of the bits of pages [i, end) in i's word; *next is the first
 * page after them. */
static uint64_t stale_run(uint64_t i, uint64_t end, uint64_t *next)
{
    unsigned bit = (unsigned)(i % 64);
    uint64_t take = 64 - bit < end - i ? 64 - bit : end - i;
    *next = i + take;
    return (take == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << take) - 1)) << bit;
}

static void stale_mark(struct hosted_machine *m, uint64_t first, uint64_t n)
{
    for (uint64_t i = first, next; i < first + n; i = next)
        atomic_fetch_or_explicit(&m->stale[i / 64], stale_run(i, first + n, &next),
                                 memory_order_relaxed);
}

static bool stale_any(struct hosted_machine *m, uint64_t first, uint64_t n)
{
    for (uint64_t i = first, next; i < first + n; i = next)
        if (atomic_load_explicit(&m->stale[i / 64], memory_order_relaxed) &
            stale_run(i, first + n, &next))
            return true;
    return false;
}

static void stale_zero(struct hosted_machine *m, uint64_t first, uint64_t n)
{
    for (uint64_t i = first, next; i < first + n; i = next) {
        uint64_t mask = stale_run(i, first + n, &next);
        uint64_t had = atomic_fetch_and_explicit(&m->stale[i / 64], ~mask, memory_order_relaxed);
        for (had &= mask; had; had &= had - 1) {
            uint64_t page = i / 64 * 64 + (unsigned)__builtin_ctzll(had);
            memset((void *)(m->mirror + page * KMM_PAGE_SIZE), 0, KMM_PAGE_SIZE);
        }
    }
}

/* A fresh mirror's change: the window's memory is kept, not replaced, so
 * that a range mapped again costs no page faults (an unmap only marks it
 * stale and lets the kernel reclaim it, MADV_FREE; a map zeroes what is
 * stale). A map over a live range (a protection change, a replacing map)
 * keeps its contents. A page stale but no longer resident is faulted in
 * to be zeroed: a cost only for a large range mapped again and little
 * used. */
static int mirror_fresh(struct hosted_machine *m, void *va, uint64_t len, int prot)
{
    uint64_t first = ((uintptr_t)va - m->mirror) / KMM_PAGE_SIZE, n = len / KMM_PAGE_SIZE;
    if (prot == PROT_NONE) {
        stale_mark(m, first, n);
        (void)madvise(va, len, MADV_FREE); /* only a hint: older kernels lack it */
        return mprotect(va, len, PROT_NONE);
    }
    if (!stale_any(m, first, n))
        return mprotect(va, len, prot);
    /* Writable, never executable too, while the stale pages are zeroed. */
    if (mprotect(va, len, PROT_READ | PROT_WRITE) != 0)
        return -1;
    stale_zero(m, first, n);
    return prot == (PROT_READ | PROT_WRITE) ? 0 : mprotect(va, len, prot);
}

/* kmm_port_mapping_changed's work on a machine with a mirror window. Out
 * of line, so that a machine without one (the benchmarks') pays for no
 * saved register. */
static __attribute__((noinline)) void mirror_change(struct kmm_port *p,
                                                    const struct kmm_port_mapping *map)
{
    struct hosted_machine *m = p->machine;
    if (map->va < m->mirror || map->len > m->mirror_size ||
        map->va - m->mirror > m->mirror_size - map->len) {
        atomic_fetch_add(&m->mirror_ignored, 1);
        return;
    }
    void *va = (void *)(uintptr_t)map->va;
    int prot = PROT_NONE;
    if (map->prot) {
        prot = PROT_READ;
        if (map->prot & KMM_PORT_PROT_WRITE)
            prot |= PROT_WRITE;
        if (map->prot & KMM_PORT_PROT_EXEC)
            prot |= PROT_EXEC;
        /* A fresh mirror is told of scattered pages as one range, with the
         * first page's address (kmm_port_mirror_needs_frames), so it judges
         * device memory by a range's first frame. */
        bool device = m->port.fresh_mirror
                          ? map->pa >= m->phys_end
                          : map->pa > m->phys_end || map->len > m->phys_end - map->pa;
        if (device) {
            /* Device memory beyond the simulated RAM: there is nothing to
             * show, so the window keeps the range inaccessible. */
            atomic_fetch_add(&m->mirror_ignored, 1);
            prot = PROT_NONE;
        }
    }
    if (m->port.fresh_mirror) {
        if (mirror_fresh(m, va, map->len, prot) != 0)
            kmm_port_panic(p, "hosted: mirroring mprotect failed");
        return;
    }
    void *got;
    if (prot == PROT_NONE)
        got = mmap(va, map->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                   -1, 0);
    else
        got = mmap(va, map->len, prot, MAP_SHARED | MAP_FIXED, m->fd, (off_t)map->pa);
    if (got != va)
        kmm_port_panic(p, "hosted: mirroring mmap failed");
}

void kmm_port_mapping_changed(struct kmm_port *p, const struct kmm_port_mapping *map)
{
    if (p->machine->mirror) /* else no window: nothing to mirror, nothing to count */
        mirror_change(p, map);
}

/* --- NUMA ------------------------------------------------------------------ */

unsigned kmm_port_node_count(const struct kmm_port *p)
{
    return p->machine->node_count;
}

unsigned kmm_port_node_of_phys(const struct kmm_port *p, uint64_t pa)
{
    const struct hosted_machine *m = p->machine;
    for (size_t i = 0; i < m->node_range_count; i++) {
        const struct hosted_node_range *r = &m->node_ranges[i];
        if (pa >= r->base && pa - r->base < r->length)
            return r->node;
    }
    return 0;
}

unsigned kmm_port_node_of_cpu(const struct kmm_port *p, unsigned cpu)
{
    return cpu < KMM_MAX_CPUS ? p->machine->cpu_node[cpu] : 0;
}

/* --- Log and panic --------------------------------------------------------- */

uint64_t kmm_port_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void kmm_port_log(struct kmm_port *p, int level, const char *line)
{
    struct hosted_machine *m = p->machine;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level < KMM_LOG_ERR || level > KMM_LOG_DEBUG)
        level = KMM_LOG_DEBUG;
    pthread_mutex_lock(&m->log_lock);
    m->log_counts[level]++;
    if (level == KMM_LOG_ERR)
        snprintf(m->last_error, sizeof(m->last_error), "%s", line);
    pthread_mutex_unlock(&m->log_lock);
    if (m->echo_log)
        fprintf(stderr, "kmm %s: %s\n", names[level], line);
    if (m->log_hook)
        m->log_hook(m->log_ctx, level, line);
}

unsigned long hosted_log_count(const struct hosted_machine *m, int level)
{
    if (level < KMM_LOG_ERR || level > KMM_LOG_DEBUG)
        return 0;
    struct hosted_machine *mm = (struct hosted_machine *)m;
    pthread_mutex_lock(&mm->log_lock);
    unsigned long n = mm->log_counts[level];
    pthread_mutex_unlock(&mm->log_lock);
    return n;
}

const char *hosted_log_last_error(const struct hosted_machine *m)
{
    return m->last_error;
}

void hosted_panic_catch(struct hosted_machine *m, jmp_buf *env)
{
    m->panic_env = env;
}

const char *hosted_panic_message(const struct hosted_machine *m)
{
    return m->panic_msg;
}

noreturn void kmm_port_panic(struct kmm_port *p, const char *msg)
{
    if (p) {
        struct hosted_machine *m = p->machine;
        snprintf(m->panic_msg, sizeof(m->panic_msg), "%s", msg);
        if (m->panic_env)
            longjmp(*m->panic_env, 1);
    }
    fprintf(stderr, "kmm panic: %s\n", msg);
    abort();
}
