/*
 * cpu.c - which simulated CPU each thread runs kmm code as (pm.h, "Threads
 * and CPUs"), the fork gate (pm.h, "Fork"), and a thread's exit.
 *
 * The pool: slot i is CPU i. A thread takes the lowest free slot at its
 * first call (so a program with few threads keeps reusing the same CPUs'
 * caches), sets the hosted port's hosted_cpu to it for good, and registers
 * a thread-specific value whose destructor, at the thread's exit, drains the
 * CPU's heap and page caches and frees the slot. Objects the thread
 * allocated stay valid: any other thread may free them.
 *
 * Lock order (pm.h): gate_lock, then shared_lock.
 */
#define _GNU_SOURCE
#include "pm.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <kmm/page.h>

#include <kmm/port.h>

_Thread_local struct pm_thread pm_self;
atomic_int pm_gate;
bool pm_asymmetric;

static struct pm_slot slots[KMM_MAX_CPUS]; /* the first pm_cpus are used */
static atomic_int free_slots;              /* a hint: how many slots of 1 .. pm_cpus - 1 are free */
static pthread_key_t exit_key;

/* Held by the forker (and the exit check) from closing the gate to opening
 * it: threads that find the gate closed wait on it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
/* The shared CPU: one thread at a time runs kmm code as PM_SHARED_CPU. */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local unsigned cpu_before_shared;
/*
 * Set on the forking thread from the end of our prepare handler to the
 * start of our parent or child handler. Fork handlers registered before
 * ours run in that span (prepare handlers last registered first, the others
 * in order) and may allocate: the forker then passes the gate it closed and
 * skips the locks it holds (this one, big.c's), as the one thread left
 * running kmm code (in the child, the only thread), so the heap it forks
 * stays quiet.
 */
static _Thread_local bool forking;

bool pm_forking(void)
{
    return forking;
}

/* --- entering ---------------------------------------------------------------------- */

static enum pm_how enter_shared(void)
{
    if (!forking)
        pthread_mutex_lock(&shared_lock);
    cpu_before_shared = hosted_cpu;
    hosted_cpu = PM_SHARED_CPU;
    return PM_SHARED;
}

void pm_leave_shared(void)
{
    hosted_cpu = cpu_before_shared;
    if (!forking)
        pthread_mutex_unlock(&shared_lock);
}

/* Takes the lowest free slot for the calling thread. False if there is none
 * (or the thread-exit hook cannot be registered): the thread then uses the
 * shared CPU for this call. */
static bool take_slot(void)
{
    if (atomic_load_explicit(&free_slots, memory_order_relaxed) <= 0)
        return false;
    for (unsigned i = 1; i < pm_cpus; i++) {
        struct pm_slot *s = &slots[i];
        int expected = 0;
        if (atomic_load_explicit(&s->owned, memory_order_relaxed) ||
            !atomic_compare_exchange_strong(&s->owned, &expected, 1))
            continue;
        atomic_fetch_sub(&free_slots, 1);
        /* May allocate (keys past the first 32): this thread is in
         * PM_T_SETUP, so such a call runs on the shared CPU. */
        if (pthread_setspecific(exit_key, s) != 0) {
            atomic_store(&s->owned, 0);
            atomic_fetch_add(&free_slots, 1);
            return false;
        }
        hosted_cpu = i;
        pm_self.slot = s;
        pm_self.state = PM_T_OWNER;
        return true;
    }
    return false;
}

enum pm_how pm_enter_slow(void)
{
    switch (pm_self.state) {
    case PM_T_INIT:
        return PM_BOOT;
    case PM_T_NEW:
        if (!pm_instance_ready())
            pm_instance_init();
        pm_self.state = PM_T_SETUP;
        if (take_slot())
            return pm_enter();
        pm_self.state = PM_T_NEW; /* the pool is full: try again next call */
        return enter_shared();
    case PM_T_OWNER: /* not reached: an owner has a slot */
    case PM_T_SETUP:
    case PM_T_EXITED:
        break;
    }
    return enter_shared();
}

enum pm_how pm_enter_gated(void)
{
    struct pm_slot *s = pm_self.slot;
    if (forking)
        return PM_OWN;
    do {
        atomic_store_explicit(&s->active, 0, memory_order_release);
        pthread_mutex_lock(&gate_lock); /* until the fork is done */
        pthread_mutex_unlock(&gate_lock);
        atomic_store_explicit(&s->active, 1, memory_order_seq_cst);
    } while (atomic_load_explicit(&pm_gate, memory_order_seq_cst));
    return PM_OWN;
}

/* --- the gate ---------------------------------------------------------------------------- */

static long membarrier(int cmd)
{
    return syscall(SYS_membarrier, cmd, 0, 0);
}

/* Every thread has executed a full barrier since the gate was closed: an
 * active mark stored before it is visible now, and one stored after it is
 * followed by a load that sees the gate closed. */
static void fence_every_thread(void)
{
    if (pm_asymmetric)
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

void pm_quiesce(void)
{
    pthread_mutex_lock(&gate_lock);
    atomic_store_explicit(&pm_gate, 1, memory_order_seq_cst);
    fence_every_thread();
    for (unsigned i = 0; i < pm_cpus; i++)
        while (atomic_load_explicit(&slots[i].active, memory_order_acquire))
            sched_yield();
    pthread_mutex_lock(&shared_lock);
}

void pm_unquiesce(void)
{
    pthread_mutex_unlock(&shared_lock);
    atomic_store_explicit(&pm_gate, 0, memory_order_seq_cst);
    pthread_mutex_unlock(&gate_lock);
}

/* --- fork --------------------------------------------------------------------------------- */

static void fork_prepare(void)
{
    pm_instance_lock();
    pm_big_lock();
    pm_quiesce();
    forking = true;
}

static void fork_parent(void)
{
    forking = false;
    pm_unquiesce();
    pm_big_unlock();
    pm_instance_unlock();
}

/* The child has one thread, the forker: every other slot's owner is gone,
 * and its CPU's caches, quiet at the fork, go to whoever takes it next. */
static void fork_child(void)
{
    forking = false;
    int free = 0;
    for (unsigned i = 1; i < pm_cpus; i++) {
        if (&slots[i] == pm_self.slot)
            continue;
        atomic_store(&slots[i].owned, 0);
        atomic_store(&slots[i].active, 0);
        free++;
    }
    atomic_store(&free_slots, free);
    /* A registration belongs to the address space, which is new. */
    if (pm_asymmetric)
        pm_asymmetric = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    /* The locks the prepare handler took are made anew rather than
     * unlocked: their holder was the forker, a thread of the parent. */
    gate_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    shared_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    atomic_store(&pm_gate, 0);
    pm_big_lock_reset();
    pm_instance_lock_reset();
}

/* --- a thread's exit ----------------------------------------------------------------------- */

/* The exit-key destructor: drains the thread's CPU and frees its slot. Calls
 * the thread makes afterwards (later destructors, libc freeing its own) run
 * on the shared CPU. */
static void thread_exit(void *arg)
{
    struct pm_slot *s = arg;
    if (s != pm_self.slot)
        return;
    enum pm_how how = pm_enter();
    kmm_heap_drain_cpu(pm_k);
    kmm_page_drain_cpu(pm_k);
    pm_leave(how);
    pm_self.slot = NULL;
    pm_self.state = PM_T_EXITED;
    hosted_cpu = PM_SHARED_CPU;
    atomic_store_explicit(&s->owned, 0, memory_order_release);
    atomic_fetch_add(&free_slots, 1);
}

static noreturn void cpu_init_failed(const char *what)
{
    static const char msg[] = "kmm-malloc: cannot start: ";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)!write(STDERR_FILENO, what, __builtin_strlen(what));
    (void)!write(STDERR_FILENO, "\n", 1);
    abort();
}

void pm_cpu_init(void)
{
    atomic_store(&free_slots, (int)pm_cpus - 1);
    pm_asymmetric = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    if (pthread_key_create(&exit_key, thread_exit) != 0)
        cpu_init_failed("pthread_key_create");
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
        cpu_init_failed("pthread_atfork");
}
