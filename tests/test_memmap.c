/*
 * test_memmap.c - resolving firmware memory maps (rules in kmm/memmap.h).
 */
#include "ktest.h"

#include <kmm/memmap.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  UINT64_C(1024)
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)

/* Checks that got[0..n) equals want[0..n), range by range. */
static void expect_map(struct ktest *t, const struct kmm_region *got, size_t got_n,
                       const struct kmm_region *want, size_t want_n)
{
    KT_EXPECT_EQ(t, got_n, want_n);
    for (size_t i = 0; i < got_n && i < want_n; i++) {
        if (got[i].base != want[i].base || got[i].length != want[i].length ||
            got[i].type != want[i].type)
            ktest_fail_at(t, __FILE__, __LINE__,
                          "range %zu: got [0x%llx +0x%llx %s], want [0x%llx +0x%llx %s]", i,
                          (unsigned long long)got[i].base, (unsigned long long)got[i].length,
                          kmm_mem_type_name(got[i].type), (unsigned long long)want[i].base,
                          (unsigned long long)want[i].length, kmm_mem_type_name(want[i].type));
    }
}

KTEST(memmap, unordered_regions_come_out_sorted)
{
    const struct kmm_region in[] = {
        {4 * MIB, 4 * MIB, KMM_MEM_USABLE},
        {1 * MIB, 1 * MIB, KMM_MEM_USABLE},
        {16 * MIB, 1 * MIB, KMM_MEM_ACPI_NVS},
    };
    const struct kmm_region want[] = {
        {1 * MIB, 1 * MIB, KMM_MEM_USABLE},
        {4 * MIB, 4 * MIB, KMM_MEM_USABLE},
        {16 * MIB, 1 * MIB, KMM_MEM_ACPI_NVS},
    };
    struct kmm_region out[8];
    size_t n = kmm_memmap_resolve(in, N(in), out, N(out));
    expect_map(t, out, n, want, N(want));
}

KTEST(memmap, reserved_wins_over_usable_where_they_overlap)
{
    const struct kmm_region in[] = {
        {1 * MIB, 15 * MIB, KMM_MEM_USABLE},
        {2 * MIB, 1 * MIB, KMM_MEM_RESERVED},
        {8 * MIB, 1 * MIB, KMM_MEM_KERNEL},
    };
    const struct kmm_region want[] = {
        {1 * MIB, 1 * MIB, KMM_MEM_USABLE}, {2 * MIB, 1 * MIB, KMM_MEM_RESERVED},
        {3 * MIB, 5 * MIB, KMM_MEM_USABLE}, {8 * MIB, 1 * MIB, KMM_MEM_KERNEL},
        {9 * MIB, 7 * MIB, KMM_MEM_USABLE},
    };
    struct kmm_region out[8];
    size_t n = kmm_memmap_resolve(in, N(in), out, N(out));
    expect_map(t, out, n, want, N(want));
}

KTEST(memmap, overlapping_non_usable_types_follow_precedence)
{
    /* bad > reserved > kernel > ACPI NVS > ACPI reclaimable > bootloader > usable */
    const struct kmm_region in[] = {
        {0x100000, 0x100000, KMM_MEM_BOOTLOADER_RECLAIMABLE},
        {0x180000, 0x100000, KMM_MEM_ACPI_RECLAIMABLE},
        {0x200000, 0x100000, KMM_MEM_BAD},
        {0x100000, 0x300000, KMM_MEM_ACPI_NVS},
    };
    const struct kmm_region want[] = {
        {0x100000, 0x100000, KMM_MEM_ACPI_NVS},
        {0x200000, 0x100000, KMM_MEM_BAD},
        {0x300000, 0x100000, KMM_MEM_ACPI_NVS},
    };
    struct kmm_region out[8];
    size_t n = kmm_memmap_resolve(in, N(in), out, N(out));
    expect_map(t, out, n, want, N(want));
}

KTEST(memmap, usable_edges_shrink_to_whole_pages)
{
    const struct kmm_region in[] = {
        {0x100800, 0x3000, KMM_MEM_USABLE}, /* 0x100800..0x103800: only 0x101000..0x103000 */
        {0x200000, 0xfff, KMM_MEM_USABLE},  /* less than a page: nothing */
        {0x300000, 0x2000, KMM_MEM_USABLE},
        {0x301800, 0x10, KMM_MEM_RESERVED}, /* a reserved sliver takes its whole page */
    };
    const struct kmm_region want[] = {
        {0x101000, 0x2000, KMM_MEM_USABLE},
        {0x300000, 0x1000, KMM_MEM_USABLE},
        {0x301800, 0x10, KMM_MEM_RESERVED},
    };
    struct kmm_region out[8];
    size_t n = kmm_memmap_resolve(in, N(in), out, N(out));
    expect_map(t, out, n, want, N(want));
}

KTEST(memmap, page_zero_is_never_usable)
{
    const struct kmm_region in[] = {{0, 0x9fc00, KMM_MEM_USABLE}};
    const struct kmm_region want[] = {{0x1000, 0x9e000, KMM_MEM_USABLE}};
    struct kmm_region out[4];
    size_t n = kmm_memmap_resolve(in, N(in), out, N(out));
    expect_map(t, out, n, want, N(want));
}

KTEST(memmap, adjacent_and_duplicate_regions_merge)
{
    const struct kmm_region in[] = {
        {1 * MIB, 1 * MIB, KMM_MEM_USABLE},
        {2 * MIB, 2 * MIB, KMM_MEM_USABLE},
        {1 * MIB, 3 * MIB, KMM_MEM_USABLE},
        {8 * MIB, 0, KMM_MEM_RESERVED}, /* empty: ignored */
    };
    const struct kmm_region want[] = {{1 * MIB, 3 * MIB, KMM_MEM_USABLE}};
    struct kmm_region out[4];
    size_t n = kmm_memmap_resolve(in, N(in), out, N(out));
    expect_map(t, out, n, want, N(want));
}

KTEST(memmap, resolve_reports_the_count_when_out_is_too_small)
{
    const struct kmm_region in[] = {
        {1 * MIB, 1 * MIB, KMM_MEM_USABLE},
        {3 * MIB, 1 * MIB, KMM_MEM_USABLE},
        {5 * MIB, 1 * MIB, KMM_MEM_USABLE},
    };
    struct kmm_region out[2] = {{0, 0, 0}, {0, 0, 0}};
    KT_EXPECT_EQ(t, kmm_memmap_resolve(in, N(in), out, 1), 3);
    KT_EXPECT_EQ(t, out[0].base, 1 * MIB);
    KT_EXPECT_EQ(t, out[1].length, 0); /* not written past cap */
    KT_EXPECT_EQ(t, kmm_memmap_resolve(in, N(in), (struct kmm_region *)0, 0), 3);
}

KTEST(memmap, validate_names_the_first_bad_entry)
{
    const struct kmm_region ok[] = {{0, 4 * KIB, KMM_MEM_USABLE}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(ok, N(ok)), KMM_MEMMAP_VALID);
    KT_EXPECT_EQ(t, kmm_memmap_validate(ok, 0), KMM_MEMMAP_VALID);

    const struct kmm_region bad_type[] = {{0, 1, KMM_MEM_USABLE}, {0, 1, 0}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(bad_type, N(bad_type)), 1);
    const struct kmm_region meta[] = {{0, 1, KMM_MEM_KMM_META}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(meta, N(meta)), 0);
    const struct kmm_region high[] = {{KMM_PHYS_LIMIT - 4096, 8192, KMM_MEM_USABLE}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(high, N(high)), 0);
    const struct kmm_region wrap[] = {{UINT64_MAX - 10, 100, KMM_MEM_RESERVED}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(wrap, N(wrap)), 0);
    /* Length 0 is ignored wherever it is; its type must still be one. */
    const struct kmm_region empty[] = {{UINT64_MAX, 0, KMM_MEM_RESERVED},
                                       {KMM_PHYS_LIMIT, 0, KMM_MEM_USABLE}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(empty, N(empty)), KMM_MEMMAP_VALID);
    const struct kmm_region empty_bad_type[] = {{UINT64_MAX, 0, 0}};
    KT_EXPECT_EQ(t, kmm_memmap_validate(empty_bad_type, N(empty_bad_type)), 0);
    KT_EXPECT_EQ(t, kmm_memmap_validate(ok, KMM_MAX_REGIONS + 1), KMM_MAX_REGIONS);
}

KTEST(memmap, a_zero_length_region_anywhere_changes_nothing)
{
    const struct kmm_region in[] = {
        {1 * MIB, 1 * MIB, KMM_MEM_USABLE},
        {UINT64_MAX, 0, KMM_MEM_BAD},
        {1 * MIB + 8 * KIB, 0, KMM_MEM_RESERVED}, /* inside usable memory: no hole */
    };
    KT_EXPECT_EQ(t, kmm_memmap_validate(in, N(in)), KMM_MEMMAP_VALID);
    struct kmm_region out[4];
    KT_ASSERT_EQ(t, kmm_memmap_resolve(in, N(in), out, N(out)), 1);
    KT_EXPECT_EQ(t, out[0].base, 1 * MIB);
    KT_EXPECT_EQ(t, out[0].length, 1 * MIB);
    KT_EXPECT_EQ(t, out[0].type, KMM_MEM_USABLE);
}

KTEST(memmap, totals_add_up_bytes_per_type_and_usable_pages)
{
    const struct kmm_region map[] = {
        {0x1000, 0x9e000, KMM_MEM_USABLE},
        {0x9fc00, 0x400, KMM_MEM_RESERVED},
        {1 * MIB, 3 * GIB, KMM_MEM_USABLE},
        {4 * GIB, 64 * KIB, KMM_MEM_ACPI_NVS},
    };
    struct kmm_memmap_totals tot;
    kmm_memmap_totals(map, N(map), &tot);
    KT_EXPECT_EQ(t, tot.bytes[KMM_MEM_USABLE], 0x9e000 + 3 * GIB);
    KT_EXPECT_EQ(t, tot.bytes[KMM_MEM_RESERVED], 0x400);
    KT_EXPECT_EQ(t, tot.bytes[KMM_MEM_ACPI_NVS], 64 * KIB);
    KT_EXPECT_EQ(t, tot.usable_pages, 0x9e + 3 * GIB / 4096);
    KT_EXPECT_EQ(t, tot.phys_end, 4 * GIB + 64 * KIB);
    KT_EXPECT_EQ(t, tot.ranges, 4);
}

KTEST(memmap, type_names_cover_every_type)
{
    KT_EXPECT_STREQ(t, kmm_mem_type_name(KMM_MEM_USABLE), "usable");
    KT_EXPECT_STREQ(t, kmm_mem_type_name(KMM_MEM_ACPI_NVS), "acpi-nvs");
    KT_EXPECT_STREQ(t, kmm_mem_type_name(KMM_MEM_KMM_META), "kmm-metadata");
    KT_EXPECT_STREQ(t, kmm_mem_type_name(0), "?");
    KT_EXPECT_STREQ(t, kmm_mem_type_name(KMM_MEM_TYPE_LIMIT), "?");
}
