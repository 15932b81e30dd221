/*
 * instance.c - the preloadable malloc's machine and instance, created by the
 * first call of the process (libc and other constructors allocate before
 * main), the bootstrap arena for the calls made meanwhile, and the
 * machine the environment asks for (debug.c reads the debugging and report
 * switches):
 *
 *   KMM_MALLOC_MIB=n    the simulated machine's RAM in MiB (default 64 GiB)
 *   KMM_MALLOC_CPUS=n   its CPUs, 2 .. KMM_MAX_CPUS (default PM_CPUS_DEFAULT): at
 *                       most n - 1 threads have one of their own at a time
 *   KMM_MALLOC_THP=1    its RAM asks for transparent huge pages (MADV_HUGEPAGE);
 *                       by default it takes the system's policy, as the memory of
 *                       glibc's and mimalloc's does (with THP in madvise mode, a
 *                       fault that zeroes 2 MiB on a virtual machine made run
 *                       times vary by a third: docs/performance.md)
 *   KMM_MALLOC_LEND=n   the heap's lending between size classes, 0 .. 16
 *                       (kmm_heap_set_lend; default KMM_HEAP_LEND_DEFAULT)
 *
 * The heap is never torn down: atexit handlers and other libraries'
 * destructors still free after ours have run. A bad KMM_MALLOC_MIB,
 * KMM_MALLOC_CPUS or KMM_MALLOC_LEND ends the process: the machine cannot be
 * made as asked.
 */
#define _GNU_SOURCE
#include "pm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <unistd.h>

#include <kmm/check.h>
#include <kmm/page.h>

#include "hosted.h"

struct kmm *pm_k;
unsigned pm_cpus;

static struct hosted_machine *machine;
static uintptr_t direct_map;
static atomic_bool ready;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* --- the bootstrap arena ------------------------------------------------------- */

/*
 * Blocks for the calls made while the instance is created, on the creating
 * thread (the hosted port's calloc of its machine and TLB log, atexit,
 * pthread_atfork): a bump allocator over zeroed static memory, so calloc
 * needs no memset and pages never touched cost nothing. Each block has a
 * 16-byte header holding its size, for realloc and malloc_usable_size. Only
 * the creating thread allocates here, under init_lock.
 */
#define BOOT_ARENA_SIZE (8u << 20)
#define BOOT_HEADER     KMM_HEAP_MIN_ALIGN

static unsigned char boot_arena[BOOT_ARENA_SIZE] __attribute__((aligned(4096)));
static size_t boot_used;

void *pm_boot_alloc(size_t size, size_t align)
{
    if (align < KMM_HEAP_MIN_ALIGN)
        align = KMM_HEAP_MIN_ALIGN;
    uintptr_t base = (uintptr_t)boot_arena;
    uintptr_t at = (base + boot_used + BOOT_HEADER + align - 1) & ~(uintptr_t)(align - 1);
    if (at - base > BOOT_ARENA_SIZE || size > BOOT_ARENA_SIZE - (at - base))
        return NULL;
    size_t *header = (size_t *)(at - BOOT_HEADER);
    *header = size ? size : 1;
    boot_used = at - base + size;
    return (void *)at;
}

bool pm_boot_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)boot_arena < BOOT_ARENA_SIZE;
}

size_t pm_boot_size(const void *p)
{
    return *(const size_t *)((uintptr_t)p - BOOT_HEADER);
}

static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* --- the instance --------------------------------------------------------------------- */

static noreturn void init_failed(const char *what, int err)
{
    pm_say(STDERR_FILENO, "kmm-malloc: cannot start: %s: %s\n", what,
           err ? strerror(err) : pm_last_error());
    abort();
}

/* The number in environment variable name, def if it is unset; aborts
 * with a message if it is not a number from min to max. */
static uint64_t env_number(const char *name, uint64_t def, uint64_t min, uint64_t max)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end || errno || n < min || n > max) {
        pm_say(STDERR_FILENO, "kmm-malloc: %s=%s: not a number from %" PRIu64 " to %" PRIu64 "\n",
               name, v, min, max);
        abort();
    }
    return n;
}

/* Called with init_lock held, on the thread whose calls go to the
 * bootstrap arena meanwhile. */
static void create_instance(void)
{
    static struct kmm_region ram;
    pm_debug_read_switches();
    uint64_t mib = env_number("KMM_MALLOC_MIB", PM_RAM_DEFAULT >> 20, PM_RAM_MIN >> 20,
                              (KMM_PAGE_PFN_LIMIT * KMM_PAGE_SIZE - PM_RAM_BASE) >> 20);
    pm_cpus = (unsigned)env_number("KMM_MALLOC_CPUS", PM_CPUS_DEFAULT, PM_CPUS_MIN, KMM_MAX_CPUS);
    ram = (struct kmm_region){PM_RAM_BASE, mib << 20, KMM_MEM_USABLE};
    uint64_t kva_size = ram.length < PM_KVA_SIZE ? ram.length : PM_KVA_SIZE;
    struct hosted_machine_config mc = {
        .ram = &ram,
        .ram_count = 1,
        .mirror_size = kva_size,
        .anonymous = true,    /* fork copies it */
        .fresh_mirror = true, /* vmalloc's blocks, usable at their addresses */
        .no_huge_hint = !env_flag("KMM_MALLOC_THP"),
        .no_tlb_log = true, /* nobody reads it, and its lock would be shared */
        .log_hook = pm_log_hook,
    };
    machine = hosted_machine_create(&mc);
    if (!machine)
        init_failed("the simulated machine", errno);
    direct_map = hosted_machine_direct_map(machine);
    uint64_t window, window_size;
    hosted_machine_mirror_window(machine, &window, &window_size);
    struct kmm_config cfg = {
        .port = hosted_machine_port(machine),
        .regions = &ram,
        .region_count = 1,
        .cpu_count = pm_cpus,
        .kva_base = window,
        .kva_size = window_size,
    };
    int err = kmm_init(&cfg, &pm_k);
    if (err)
        init_failed("kmm_init", 0);
    /* KMM_MALLOC_LEND=N: how many larger size classes lend to one with
     * no free object (kmm_heap_set_lend; 0 turns lending off). */
    unsigned lend =
        (unsigned)env_number("KMM_MALLOC_LEND", KMM_HEAP_LEND_DEFAULT, 0, KMM_HEAP_LEND_MAX);
    if (kmm_heap_set_lend(pm_k, lend) != KMM_OK)
        init_failed("kmm_heap_set_lend", 0);
    pm_debug_start();
}

void pm_instance_init(void)
{
    pthread_mutex_lock(&init_lock);
    if (!atomic_load_explicit(&ready, memory_order_acquire)) {
        enum pm_thread_state was = pm_self.state;
        pm_self.state = PM_T_INIT;
        create_instance();
        pm_cpu_init();
        if (pm_exit_wanted() && atexit(pm_exit_hook) != 0)
            init_failed("atexit", ENOMEM);
        pm_self.state = was;
        atomic_store_explicit(&ready, true, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
}

bool pm_instance_ready(void)
{
    return atomic_load_explicit(&ready, memory_order_acquire);
}

void pm_instance_lock(void)
{
    pthread_mutex_lock(&init_lock);
}

void pm_instance_unlock(void)
{
    pthread_mutex_unlock(&init_lock);
}

void pm_instance_lock_reset(void)
{
    init_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

const char *pm_last_error(void)
{
    return machine ? hosted_log_last_error(machine) : "";
}

void *pm_phys_to_virt(uint64_t pa)
{
    return (void *)(direct_map + (uintptr_t)pa);
}

size_t pm_direct_map_align(void)
{
    return (size_t)(direct_map & -direct_map);
}

uint64_t pm_virt_to_phys(const void *p)
{
    return (uint64_t)((uintptr_t)p - direct_map);
}
