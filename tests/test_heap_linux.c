/*
 * test_heap_linux.c - kmm/linux.h: the Linux names reach the instance the
 * kernel named, with Linux's meaning.
 */
#include "ktest.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>

static struct kmm *linux_kmm;
#define KMM_LINUX_INSTANCE linux_kmm
#include <kmm/linux.h>

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

KTEST(heap_linux, the_linux_names_work_on_the_named_instance)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map32, 1, 1, 0));
    linux_kmm = f.k;
    char *p = kzalloc(100, GFP_KERNEL);
    KT_ASSERT(t, p != NULL);
    for (int i = 0; i < 100; i++)
        KT_ASSERT_EQ(t, p[i], 0);
    KT_EXPECT(t, ksize(p) >= 100);
    p = krealloc(p, 3000, GFP_ATOMIC);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT(t, kmalloc_array(SIZE_MAX / 2, 3, GFP_KERNEL) == NULL);
    unsigned *a = kcalloc(10, sizeof(unsigned), GFP_KERNEL);
    KT_ASSERT(t, a != NULL);
    KT_EXPECT_EQ(t, a[9], 0);
    struct kmem_cache *c = kmem_cache_create("linux-test", 48, 0, SLAB_HWCACHE_ALIGN, NULL);
    KT_ASSERT(t, c != NULL);
    void *o = kmem_cache_zalloc(c, GFP_KERNEL);
    KT_ASSERT(t, o != NULL);
    KT_EXPECT_EQ(t, (uintptr_t)o % 64, 0);
    kmem_cache_free(c, o);
    KT_EXPECT_EQ(t, kmem_cache_shrink(c), 0);
    kmem_cache_destroy(c);
    kfree(a);
    kfree(p);
    kfree(NULL);
    struct kmm_heap_stats hs;
    kmm_heap_stats(f.k, &hs);
    KT_EXPECT_EQ(t, hs.allocs, hs.frees);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
