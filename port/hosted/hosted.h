/*
 * hosted.h - the hosted port's own interface: simulated machines for tests,
 * benchmarks and the hosted demo. Not part of the library's core interface.
 *
 * A machine is a physical address space [0, phys_end) kept in one memfd:
 *
 *   direct map (PROT_NONE reservation of phys_end bytes, 1 GiB aligned)
 *   |--hole--|==RAM==|--------hole--------|=====RAM=====|--hole--|
 *            ^ memfd mapped MAP_SHARED at direct_map + pa for each RAM range
 *
 * Holes stay PROT_NONE, so a library bug that touches memory which is not RAM
 * faults at once. The file is sparse: a machine with hundreds of GiB costs
 * only the pages that are touched.
 *
 * The mirror window is a second PROT_NONE reservation. When the library maps
 * virtual addresses inside it (kmm_port_mapping_changed), the port maps the
 * same memfd pages there, so the test program can use the addresses the
 * library hands out, and a write to a read-only mapping is a real SIGSEGV.
 */
#ifndef KMM_HOSTED_H
#define KMM_HOSTED_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>
#include <kmm/memmap.h>
#include <kmm/port.h>

struct hosted_node_range {
    uint64_t base, length;
    unsigned node;
};

struct hosted_machine_config {
    /* RAM ranges (only base and length are read). Rounded out to pages. */
    const struct kmm_region *ram;
    size_t ram_count;
    /* Bytes of the mirror window (a multiple of 2 MiB; 0: no window). */
    uint64_t mirror_size;
    /* NUMA: node_count 0 or 1 means one node; ranges not listed are node 0;
     * CPU c is on node cpu_node[c] (default 0). */
    unsigned node_count;
    const struct hosted_node_range *node_ranges;
    size_t node_range_count;
    const unsigned *cpu_node;
    size_t cpu_node_count;
    /* Echo log lines to stderr (the demo does; tests keep quiet). */
    bool echo_log;
    /* Called with each log line (level KMM_LOG_*) after it is counted, on the
     * thread that logs it, maybe inside kmm code with its locks held: it must
     * not call kmm (the preloadable malloc's reports: it writes with write(2)).
     * NULL: none. */
    void (*log_hook)(void *ctx, int level, const char *line);
    void *log_ctx;
    /* RAM as anonymous private memory (MAP_PRIVATE | MAP_ANONYMOUS, with
     * MADV_HUGEPAGE) instead of the memfd, so that it can get transparent huge
     * pages where shmem THP is off (benchmarks). There is then no mirror window
     * that shows the RAM: mirror_size must be 0 unless fresh_mirror is set,
     * else hosted_machine_create fails with EINVAL. */
    bool anonymous;
    /* With anonymous RAM: no MADV_HUGEPAGE, the system's THP policy as for any
     * process's memory (the preloadable malloc, measured against mallocs that
     * ask for no huge pages either). */
    bool no_huge_hint;
    /* With anonymous RAM: a mirror window of mirror_size bytes whose mappings
     * are fresh, zeroed private memory rather than the physical pages
     * (private memory cannot be mapped twice), so that fork copies all of
     * the machine. What the library maps there starts zeroed (a page that
     * an earlier mapping used is zeroed when mapped again; an unmapped one
     * is kept, for the kernel to reclaim with MADV_FREE, so that mapping it
     * again costs no page fault); a map over a live range (a protection
     * change, a replacing map) keeps the contents; device memory is judged
     * by a range's first frame. It is not seen through the direct map, nor
     * the other way round: enough for blocks
     * that are only used through their kernel virtual addresses (vmalloc's,
     * as the preloadable malloc uses them), not for vmap of pages with
     * contents. Without anonymous, hosted_machine_create fails with EINVAL. */
    bool fresh_mirror;
    /* Do not record TLB requests (benchmarks: user space has no invlpg, and
     * the log's lock would be measured instead of the library). The hooks
     * are still called. */
    bool no_tlb_log;
};

/* Creates a machine. Returns NULL (with errno set) if the host refuses. */
struct hosted_machine *hosted_machine_create(const struct hosted_machine_config *cfg);

/* Creates a machine whose RAM is every range of map that the library may
 * touch (usable, bootloader-reclaimable, ACPI-reclaimable), with a mirror
 * window of mirror_size bytes. */
struct hosted_machine *hosted_machine_from_map(const struct kmm_region *map, size_t n,
                                               uint64_t mirror_size);

void hosted_machine_destroy(struct hosted_machine *m);

/* The port context for kmm_config.port. */
struct kmm_port *hosted_machine_port(struct hosted_machine *m);

/* Makes the machine play an MMU that caches only accessed leaves
 * (kmm_port_tlb_skip_unaccessed, kmm/port.h): the library then skips the
 * invalidation of a leaf it clears with the accessed flag clear. No MMU
 * walks the simulated tables, so a test that asks for the rule sets the
 * accessed flags itself where an access would (tests/ktest/soft_mmu.h,
 * smmu_touch). Takes effect at the next kmm_init on the machine. */
void hosted_machine_accessed_rule(struct hosted_machine *m, bool on);

/* Where physical address 0 is mapped, and the memfd's size. */
uintptr_t hosted_machine_direct_map(const struct hosted_machine *m);
uint64_t hosted_machine_phys_end(const struct hosted_machine *m);

/* The mirror window [*base, *base + *size); *size is 0 if there is none. */
void hosted_machine_mirror_window(const struct hosted_machine *m, uint64_t *base, uint64_t *size);
/* How many mapping_changed calls fell outside the window (and were ignored),
 * or mapped physical addresses beyond the simulated RAM (device memory: the
 * window keeps such a range inaccessible). */
unsigned long hosted_machine_mirror_ignored(const struct hosted_machine *m);

/* --- CPUs ------------------------------------------------------------------ */

/* Makes the calling thread act as CPU cpu. Returns false if another thread
 * holds that CPU. The main thread is CPU 0 until it enters another. */
bool hosted_cpu_enter(unsigned cpu);
/* Releases the CPU the calling thread holds. */
void hosted_cpu_exit(void);

/* --- The TLB-event log -------------------------------------------------------- */

enum hosted_tlb_op {
    HOSTED_TLB_FLUSH_PAGE,
    HOSTED_TLB_FLUSH_RANGE,
    HOSTED_TLB_FLUSH_ALL,
    HOSTED_TLB_SHOOTDOWN,
    HOSTED_TLB_LOAD_ROOT,
};

struct hosted_tlb_event {
    uint64_t seq; /* from hosted_machine_seq(): orders events against others */
    unsigned cpu;
    enum hosted_tlb_op op;
    uint64_t root;    /* SHOOTDOWN, LOAD_ROOT */
    uint64_t va, len; /* len 0 with FLUSH_ALL / SHOOTDOWN: everything */
    bool global;
};

/* Events recorded since the last clear (at most HOSTED_TLB_LOG_MAX; later
 * ones are counted in hosted_tlb_log_dropped). */
#define HOSTED_TLB_LOG_MAX 65536
size_t hosted_tlb_log_count(const struct hosted_machine *m);
struct hosted_tlb_event hosted_tlb_log_get(const struct hosted_machine *m, size_t i);
unsigned long hosted_tlb_log_dropped(const struct hosted_machine *m);
void hosted_tlb_log_clear(struct hosted_machine *m);

/* Calls fn(ctx, event) after each TLB event is recorded, outside the log's
 * lock, on the thread that caused it (NULL removes it). A test uses it to
 * look at the world at the moment of an invalidation. */
void hosted_tlb_observe(struct hosted_machine *m,
                        void (*fn)(void *ctx, const struct hosted_tlb_event *e), void *ctx);

/* A machine-wide sequence number: every TLB event takes the next one, and a
 * test may take one to mark when something else happened. */
uint64_t hosted_machine_seq(struct hosted_machine *m);

/* --- Log and panics -------------------------------------------------------- */

unsigned long hosted_log_count(const struct hosted_machine *m, int level);
/* The last line logged at KMM_LOG_ERR ("" if none). */
const char *hosted_log_last_error(const struct hosted_machine *m);

/* While a catcher is set, a library panic on this machine stores its message
 * and longjmps to *env with value 1 instead of aborting. NULL removes it. */
void hosted_panic_catch(struct hosted_machine *m, jmp_buf *env);
const char *hosted_panic_message(const struct hosted_machine *m);

#endif /* KMM_HOSTED_H */
