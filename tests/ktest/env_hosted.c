/*
 * env_hosted.c - test machines over the hosted port (contract: env.h).
 */
#include "env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosted.h"

/* Every hosted test machine gets a mirror window the size of the default
 * kernel heap window, so mapping tests can use what they map. */
#define KT_MIRROR_SIZE (UINT64_C(256) << 20)

struct kt_machine {
    struct hosted_machine *hm;
};

struct kt_machine *kt_machine_create(struct ktest *t, const struct kmm_region *map, size_t n)
{
    struct kt_machine *m = calloc(1, sizeof(*m));
    if (m)
        m->hm = hosted_machine_from_map(map, n, KT_MIRROR_SIZE);
    if (!m || !m->hm) {
        ktest_fail_at(t, __FILE__, __LINE__, "hosted machine: %s", strerror(errno));
        free(m);
        return NULL;
    }
    return m;
}

struct kmm_port *kt_machine_port(struct kt_machine *m)
{
    return hosted_machine_port(m->hm);
}

void *kt_machine_phys(struct kt_machine *m, uint64_t pa)
{
    return (void *)(hosted_machine_direct_map(m->hm) + (uintptr_t)pa);
}

void kt_machine_live_window(struct kt_machine *m, uint64_t *base, uint64_t *size)
{
    hosted_machine_mirror_window(m->hm, base, size);
}

unsigned long kt_machine_log_count(struct kt_machine *m, int level)
{
    return hosted_log_count(m->hm, level);
}

const char *kt_machine_last_error(struct kt_machine *m)
{
    return hosted_log_last_error(m->hm);
}

void kt_machine_destroy(struct kt_machine *m)
{
    if (!m)
        return;
    hosted_machine_destroy(m->hm);
    free(m);
}

void kt_fill(void *p, uint8_t byte, size_t n)
{
    memset(p, byte, n);
}

int kt_cmp(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n);
}
