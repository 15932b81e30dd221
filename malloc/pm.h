/*
 * malloc/pm.h - the preloadable malloc (build/hosted/libkmm-malloc.so): a
 * system malloc over the kernel heap (kmm/heap.h) of one kmm instance, on a
 * simulated machine the library creates at its first call. Private to
 * malloc/; the library exports only the malloc family (malloc.c).
 *
 *   instance.c  the machine and the instance, made lazily; the bootstrap
 *               arena that serves the calls made while they are made
 *   debug.c     the debugging switches (KMM_MALLOC_DEBUG), what is said
 *               when the heap finds a mistake, the reports and the check
 *               at exit (KMM_MALLOC_REPORT, KMM_MALLOC_CHECK)
 *   cpu.c       which simulated CPU each thread runs kmm code as; the fork
 *               gate; a thread's exit
 *   big.c       blocks aligned beyond what the heap can align (over 4 KiB
 *               for more than KMM_HEAP_ALIGN_MAX bytes, or over it)
 *   malloc.c    malloc, free, calloc, realloc, ... as programs expect them
 *
 * Threads and CPUs. The heap's per-CPU caches take no lock: one thread at a
 * time may run kmm code as a given CPU. So each thread takes a CPU of its own
 * from a pool (CPUs 1 .. pm_cpus - 1) at its first call and gives it back,
 * drained, when it exits (cpu.c). A thread that finds the pool empty, or
 * calls after its exit hook ran, runs kmm code as CPU 0 (PM_SHARED_CPU)
 * under a lock, one call at a time.
 *
 * Fork. A child must not inherit a heap that another thread was changing. An
 * owning thread marks its CPU's slot active around each kmm call; fork's
 * prepare handler closes a gate and waits until no slot is active (and takes
 * the shared CPU's lock), so the child's copy is quiet. The mark is a plain
 * store: the forker makes it visible with membarrier(2), an asymmetric fence
 * (where the kernel has none, the mark is a sequentially consistent store).
 * Other libraries' fork handlers may allocate between our prepare and our
 * parent or child handler: the forker alone then runs kmm code, past the
 * gate and the locks it holds (pm_forking).
 *
 * Lock order: init_lock (instance.c), big_lock (big.c), gate_lock, then
 * shared_lock (cpu.c). A thread inside an entered section (pm_enter to
 * pm_leave) takes none of them.
 */
#ifndef KMM_MALLOC_PM_H
#define KMM_MALLOC_PM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include <kmm/heap.h>
#include <kmm/kmm.h>

/* The simulated machine: RAM from 4 GiB (kmm_init then writes the
 * descriptors of its first GiB only; the rest is initialised as the heap
 * grows), reserved but untouched until used; KMM_MALLOC_MIB overrides its
 * size. The kernel virtual areas (vmalloc: blocks over KMM_HEAP_PAGES_MAX)
 * get a window as large as kmm allows. */
#define PM_RAM_BASE     (UINT64_C(4) << 30)
#define PM_RAM_DEFAULT  (UINT64_C(64) << 30)
#define PM_RAM_MIN      (UINT64_C(16) << 20)
#define PM_KVA_SIZE     (UINT64_C(64) << 30)
/* The instance's CPUs (pm_cpus): KMM_MALLOC_CPUS, else PM_CPUS_DEFAULT. Each
 * costs per-CPU caches (about 16 KiB each with the heap's classes); a
 * thread beyond them shares CPU 0 under a lock. */
#define PM_CPUS_DEFAULT 64u
#define PM_CPUS_MIN     2u
#define PM_SHARED_CPU   0u
#define PM_PAGE         ((size_t)KMM_PAGE_SIZE)
#define PM_CACHE_LINE   64

/* The instance every call uses, and its CPU count; set once, before the
 * instance is ready (pm_instance_ready). */
extern struct kmm *pm_k;
extern unsigned pm_cpus;

/* --- instance.c --------------------------------------------------------------- */

/* Creates the machine and the instance if no thread has yet (the first
 * call of the process). Returns with the instance live, or aborts the
 * process with a message if the host refuses the memory. */
void pm_instance_init(void);
bool pm_instance_ready(void);
void pm_instance_lock(void);
void pm_instance_unlock(void);
/* In a forked child: the lock made anew (its holder was the forker). */
void pm_instance_lock_reset(void);

/* The bootstrap arena: the blocks of the calls made while the instance is
 * being created (libc and the hosted port allocate too). Never freed. */
void *pm_boot_alloc(size_t size, size_t align);
bool pm_boot_owns(const void *p);
size_t pm_boot_size(const void *p);

/* The kmm log's last error line, for a message about a rejected call. */
const char *pm_last_error(void);

/* The direct map: where physical address pa is, and the largest power of
 * two its base is aligned to. */
void *pm_phys_to_virt(uint64_t pa);
uint64_t pm_virt_to_phys(const void *p);
size_t pm_direct_map_align(void);

/* --- cpu.c --------------------------------------------------------------------- */

/* One CPU of the pool: its own cache line, so that marks do not bounce. */
struct pm_slot {
    atomic_int active; /* 1 while the owner runs kmm code: fork waits for 0 */
    atomic_int owned;  /* taken by a live thread */
} __attribute__((aligned(PM_CACHE_LINE)));

/* What a thread is to the pool. */
enum pm_thread_state {
    PM_T_NEW,    /* no CPU yet (or the pool was empty at its last call) */
    PM_T_INIT,   /* creating the instance: its calls use the bootstrap arena */
    PM_T_SETUP,  /* taking a CPU: calls made meanwhile use the shared CPU */
    PM_T_OWNER,  /* owns slot */
    PM_T_EXITED, /* its exit hook gave its CPU back: the shared CPU from now on */
};

/* A line the kmm log can hand over (the library's own bound). */
#define PM_HEAP_LINE 256
/* A call site resolved (debug.c): an address, an object's path, an offset. */
#define PM_LINE      512

struct pm_thread {
    struct pm_slot *slot; /* the CPU this thread owns; NULL unless PM_T_OWNER */
    enum pm_thread_state state;
    bool found;                    /* the heap logged an error on this thread (pm_log_hook) */
    char found_line[PM_HEAP_LINE]; /* the last such line */
};

/* How a call runs kmm code (pm_enter's answer, pm_leave's argument). */
enum pm_how {
    PM_OWN,    /* as the thread's own CPU */
    PM_SHARED, /* as the shared CPU, its lock held */
    PM_BOOT,   /* not at all: the instance is being made; use the bootstrap arena */
};

extern _Thread_local struct pm_thread pm_self;
extern atomic_int pm_gate; /* 1 while a fork (or the exit check) needs quiet */
extern bool pm_asymmetric; /* the forker fences with membarrier(2) */

enum pm_how pm_enter_slow(void);
enum pm_how pm_enter_gated(void);
void pm_leave_shared(void);

/* Whether the calling thread is forking: between our prepare handler and
 * our parent or child handler, when it holds every lock (cpu.c). */
bool pm_forking(void);

/* Sets up the pool and the fork and thread-exit hooks; from pm_instance_init. */
void pm_cpu_init(void);

/* Waits until no thread runs kmm code and keeps it so (the gate closed, the
 * shared CPU held), until pm_unquiesce. The caller must not be entered. */
void pm_quiesce(void);
void pm_unquiesce(void);

/*
 * pm_enter - before a kmm call: makes the calling thread a CPU that no other
 * thread runs as until pm_leave. O(1) and no shared write for a thread that
 * owns a CPU (the common case); the slow path takes a CPU, creates the
 * instance or takes the shared CPU's lock.
 */
static inline enum pm_how pm_enter(void)
{
    struct pm_slot *s = pm_self.slot;
    if (__builtin_expect(s == NULL, 0))
        return pm_enter_slow();
    if (pm_asymmetric) {
        atomic_store_explicit(&s->active, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
    } else {
        atomic_store_explicit(&s->active, 1, memory_order_seq_cst);
    }
    if (__builtin_expect(atomic_load_explicit(&pm_gate, memory_order_seq_cst), 0))
        return pm_enter_gated();
    return PM_OWN;
}

/* pm_leave - after the kmm call: what pm_enter took goes back. */
static inline void pm_leave(enum pm_how how)
{
    if (__builtin_expect(how == PM_OWN, 1))
        atomic_store_explicit(&pm_self.slot->active, 0, memory_order_release);
    else if (how == PM_SHARED)
        pm_leave_shared();
}

/* --- debug.c -------------------------------------------------------------------- */

/* Any debugging mode or guard pages on (KMM_MALLOC_DEBUG): allocations name
 * their caller to the heap, and each call checks what the heap found. */
extern bool pm_debugging;

/* Reads the switches (before the machine is made: no kmm call), and
 * switches the heap's modes on (after kmm_init, before its first
 * allocation). A bad value is said on stderr and ignored. */
void pm_debug_read_switches(void);
void pm_debug_start(void);
/* Whether a report or check at exit was asked for: then the instance
 * registers pm_exit_hook with atexit (debug.c says why). */
bool pm_exit_wanted(void);
void pm_exit_hook(void);

/* The machine's log hook: keeps the thread's last error line. */
void pm_log_hook(void *ctx, int level, const char *line);

/* A call the heap refused (err) for p from caller: says so, with what the
 * heap logged and where caller is, and ends the process (SIGABRT). */
noreturn void pm_reject(const char *call, const void *p, int err, const void *caller);
void pm_found_slow(const char *call, const void *p, const void *caller);
/* After a call that succeeded: if the heap found damage meanwhile (a red
 * zone or poison written), says so and ends the process as pm_reject. */
static inline void pm_found(const char *call, const void *p, const void *caller)
{
    if (__builtin_expect(pm_debugging, 0) && pm_self.found)
        pm_found_slow(call, p, caller);
}

/* One line to fd without malloc; keeps errno. */
void pm_say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- big.c ---------------------------------------------------------------------- */

/* Whether the heap cannot give this alignment for this size itself:
 * kmm_aligned_alloc takes alignments up to KMM_HEAP_ALIGN_MAX, and above the
 * page size only for blocks up to KMM_HEAP_ALIGN_MAX (vmalloc'd blocks are
 * aligned to the page). */
static inline bool pm_big_needed(size_t align, size_t size)
{
    return align > PM_PAGE && (size > KMM_HEAP_ALIGN_MAX || align > KMM_HEAP_ALIGN_MAX);
}

/* Blocks of big.c are aligned to more than a page: a free of anything else
 * never looks them up. */
#define PM_BIG_MIN_ALIGN (2 * PM_PAGE)
extern atomic_size_t pm_big_live;

static inline bool pm_big_maybe(const void *p)
{
    return ((uintptr_t)p & (PM_BIG_MIN_ALIGN - 1)) == 0 &&
           atomic_load_explicit(&pm_big_live, memory_order_relaxed) != 0;
}

/* A block of size bytes aligned to align (pm_big_needed), from a run of the
 * page allocator; NULL if memory runs out. The caller must not be entered. */
void *pm_big_alloc(size_t align, size_t size);
/* Frees p if it is a block of pm_big_alloc; false (nothing done) if not. */
bool pm_big_free(const void *p);
/* p's usable bytes if it is a block of pm_big_alloc, else 0. */
size_t pm_big_size(const void *p);
void pm_big_lock(void);
void pm_big_unlock(void);
void pm_big_lock_reset(void);

#endif /* KMM_MALLOC_PM_H */
