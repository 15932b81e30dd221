/*
 * spin_barrier.h - a barrier for the two threads of a race test, hosted
 * only. It spins (a sleeping barrier would wake the threads at different
 * times and the racing calls would rarely meet), yielding after a while
 * so that a single host CPU still makes progress.
 */
#ifndef KT_SPIN_BARRIER_H
#define KT_SPIN_BARRIER_H

#include <sched.h>
#include <stdatomic.h>

struct spin_barrier {
    atomic_uint arrived, generation;
};

/* Waits until both threads have arrived at b. */
static inline void spin_wait(struct spin_barrier *b)
{
    unsigned gen = atomic_load(&b->generation);
    if (atomic_fetch_add(&b->arrived, 1) == 1) {
        atomic_store(&b->arrived, 0);
        atomic_store(&b->generation, gen + 1);
        return;
    }
    for (unsigned spins = 0; atomic_load(&b->generation) == gen; spins++)
        if (spins > 1000)
            sched_yield();
}

#endif /* KT_SPIN_BARRIER_H */
