/*
 * test_init.c - creating and tearing down instances: where the instance
 * lives, what bad configurations do, and that nothing is written on failure.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/port.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)

/* A small PC: low memory, the legacy hole, then 31 MiB of RAM and a
 * reserved sliver at its end, like firmware tables. */
static const struct kmm_region small_pc[] = {
    {0x0, 0x9fc00, KMM_MEM_USABLE},
    {0x9fc00, 0x400, KMM_MEM_RESERVED},
    {0xf0000, 0x10000, KMM_MEM_RESERVED},
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
    {32 * MIB - 0x800, 0x800, KMM_MEM_ACPI_RECLAIMABLE},
};

static struct kmm_config config_for(struct kt_machine *m, const struct kmm_region *map, size_t n)
{
    struct kmm_config cfg = {
        .port = kt_machine_port(m), .regions = map, .region_count = n, .cpu_count = 4};
    return cfg;
}

/* True iff every byte of [pa, pa + len) of the machine holds byte. */
static bool memory_is(struct kt_machine *m, uint64_t pa, uint64_t len, uint8_t byte)
{
    const uint8_t *p = kt_machine_phys(m, pa);
    for (uint64_t i = 0; i < len; i++)
        if (p[i] != byte)
            return false;
    return true;
}

KTEST(init, instance_sits_at_the_end_of_the_highest_usable_range_above_1mib)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    struct kmm *k = 0;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    KT_ASSERT(t, k != 0);

    size_t n;
    const struct kmm_region *map = kmm_memory_map(k, &n);
    /* usable low | reserved | reserved | usable | meta | acpi-reclaimable */
    KT_ASSERT_EQ(t, n, 6);
    KT_EXPECT_EQ(t, map[0].base, 0x1000); /* page 0 left out */
    KT_EXPECT_EQ(t, map[0].length, 0x9e000);
    KT_EXPECT_EQ(t, map[3].type, KMM_MEM_USABLE);
    KT_EXPECT_EQ(t, map[3].base, 1 * MIB);
    KT_EXPECT_EQ(t, map[4].type, KMM_MEM_KMM_META);
    /* The partial page under the ACPI sliver is not usable, so the instance
     * ends where the last whole usable page ends. */
    KT_EXPECT_EQ(t, map[4].base + map[4].length, 32 * MIB - 0x1000);
    KT_EXPECT_EQ(t, map[3].base + map[3].length, map[4].base);
    KT_EXPECT_EQ(t, map[4].length % KMM_PAGE_SIZE, 0);
    KT_EXPECT_EQ(t, map[5].type, KMM_MEM_ACPI_RECLAIMABLE);
    /* The instance's memory is really the instance: its address is the
     * direct-map address of the metadata range. */
    KT_EXPECT(t, (void *)k == kt_machine_phys(m, map[4].base));
    KT_EXPECT_EQ(t, kt_machine_log_count(m, KMM_LOG_ERR), 0);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(init, reserved_ranges_from_the_host_are_kept_out)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    const struct kmm_region kernel[] = {{1 * MIB, 2 * MIB, KMM_MEM_KERNEL}};
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    cfg.reserved = kernel;
    cfg.reserved_count = N(kernel);
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    size_t n;
    const struct kmm_region *map = kmm_memory_map(k, &n);
    KT_ASSERT(t, n >= 5);
    KT_EXPECT_EQ(t, map[3].type, KMM_MEM_KERNEL);
    KT_EXPECT_EQ(t, map[3].base, 1 * MIB);
    KT_EXPECT_EQ(t, map[4].type, KMM_MEM_USABLE);
    KT_EXPECT_EQ(t, map[4].base, 3 * MIB);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(init, a_zero_length_range_anywhere_is_ignored)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_region regions[N(small_pc) + 1];
    for (size_t i = 0; i < N(small_pc); i++)
        regions[i] = small_pc[i];
    regions[N(small_pc)] = (struct kmm_region){UINT64_MAX, 0, KMM_MEM_RESERVED};
    const struct kmm_region nothing[] = {{UINT64_MAX, 0, KMM_MEM_KERNEL}};
    struct kmm_config cfg = config_for(m, regions, N(regions));
    cfg.reserved = nothing;
    cfg.reserved_count = N(nothing);
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    size_t n;
    kmm_memory_map(k, &n);
    KT_EXPECT_EQ(t, n, 6); /* as without them */
    kmm_fini(k);
    kt_machine_destroy(m);
}

/* Every rejected configuration returns the error, logs one line, and writes
 * no byte of the machine's memory. */
static void expect_rejected(struct ktest *t, struct kt_machine *m, const struct kmm_config *cfg,
                            int want, const char *why)
{
    kt_fill(kt_machine_phys(m, 1 * MIB), 0xa5, 31 * MIB - 0x1000);
    unsigned long errors = kt_machine_log_count(m, KMM_LOG_ERR);
    struct kmm *k = (struct kmm *)0x1;
    int err = kmm_init(cfg, &k);
    if (err != want)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: got %s, want %s", why, kmm_strerror(err),
                      kmm_strerror(want));
    if (k != (struct kmm *)0x1)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: *out was written", why);
    if (cfg && cfg->port && kt_machine_log_count(m, KMM_LOG_ERR) != errors + 1)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: %lu error lines, want 1", why,
                      kt_machine_log_count(m, KMM_LOG_ERR) - errors);
    if (!memory_is(m, 1 * MIB, 31 * MIB - 0x1000, 0xa5))
        ktest_fail_at(t, __FILE__, __LINE__, "%s: memory was written", why);
}

KTEST(init, bad_configurations_are_rejected_without_writing_memory)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config good = config_for(m, small_pc, N(small_pc));
    struct kmm_config cfg;

    expect_rejected(t, m, 0, KMM_EINVAL, "NULL config");
    cfg = good;
    cfg.cpu_count = 0;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "zero CPUs");
    cfg.cpu_count = KMM_MAX_CPUS + 1;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "too many CPUs");
    cfg = good;
    cfg.regions = 0;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "NULL regions");
    cfg = good;
    cfg.reserved_count = 1;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "NULL reserved with a count");
    cfg = good;
    cfg.region_count = KMM_MAX_REGIONS + 1;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "too many regions");
    cfg = good;
    cfg.region_count = (size_t)-1; /* with reserved_count 2 the sum wraps to 1 */
    cfg.reserved = small_pc;
    cfg.reserved_count = 2;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "region counts whose sum wraps around");

    const struct kmm_region bad_type[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}, {0, 1, 99}};
    cfg = config_for(m, bad_type, N(bad_type));
    expect_rejected(t, m, &cfg, KMM_EINVAL, "unknown region type");
    const struct kmm_region too_high[] = {{KMM_PHYS_LIMIT, 4096, KMM_MEM_USABLE}};
    cfg = good;
    cfg.reserved = too_high;
    cfg.reserved_count = 1;
    expect_rejected(t, m, &cfg, KMM_EINVAL, "reserved range beyond MAXPHYADDR");
    const struct kmm_region usable[] = {{1 * MIB, 2 * MIB, KMM_MEM_KERNEL},
                                        {4 * MIB, 1 * MIB, KMM_MEM_USABLE}};
    cfg = good;
    cfg.reserved = usable;
    cfg.reserved_count = N(usable);
    expect_rejected(t, m, &cfg, KMM_EINVAL, "reserved range of type usable");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(m), "reserved range 1"));

    const struct kmm_region low_only[] = {{0, 0x9f000, KMM_MEM_USABLE}};
    cfg = config_for(m, low_only, N(low_only));
    expect_rejected(t, m, &cfg, KMM_ENOMEM, "no usable memory above 1 MiB");

    /* The machine is still fine for a good configuration afterwards. */
    struct kmm *k;
    KT_EXPECT_EQ(t, kmm_init(&good, &k), KMM_OK);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(init, an_instance_can_be_created_and_torn_down_many_times)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    for (int i = 0; i < 100; i++) {
        struct kmm *k;
        KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
        size_t n;
        kmm_memory_map(k, &n);
        KT_ASSERT_EQ(t, n, 6);
        kmm_fini(k);
    }
    kt_machine_destroy(m);
}

KTEST(init, a_second_fini_is_refused_and_a_null_one_does_nothing)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    KT_EXPECT_EQ(t, kmm_fini(k), KMM_OK);
    KT_EXPECT_EQ(t, kmm_fini(k), KMM_ESTATE); /* not a panic: a caller's mistake */
    KT_EXPECT_EQ(t, kmm_fini(NULL), KMM_OK);
    static struct kt_text tx; /* a report of what is gone says so, and no more */
    kmm_report(k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT_STREQ(t, tx.buf, "kmm_report: not a live instance (canary 0x0)\n");
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    /* The memory is plain memory again: a new instance takes the same place. */
    struct kmm *again;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &again), KMM_OK);
    KT_EXPECT(t, again == k);
    KT_EXPECT_EQ(t, kmm_fini(again), KMM_OK);
    kt_machine_destroy(m);
}

KTEST(init, two_instances_on_two_machines_are_independent)
{
    static const struct kmm_region other[] = {{0, 64 * MIB, KMM_MEM_USABLE}};
    struct kt_machine *a = kt_machine_create(t, small_pc, N(small_pc));
    if (!a)
        return;
    struct kt_machine *b = kt_machine_create(t, other, N(other));
    if (!b) {
        kt_machine_destroy(a);
        return;
    }
    struct kmm_config ca = config_for(a, small_pc, N(small_pc));
    struct kmm_config cb = config_for(b, other, N(other));
    struct kmm *ka, *kb;
    KT_ASSERT_EQ(t, kmm_init(&ca, &ka), KMM_OK);
    KT_ASSERT_EQ(t, kmm_init(&cb, &kb), KMM_OK);
    size_t na, nb;
    kmm_memory_map(ka, &na);
    const struct kmm_region *mb = kmm_memory_map(kb, &nb);
    KT_EXPECT_EQ(t, na, 6);
    KT_EXPECT_EQ(t, nb, 2); /* usable, then the instance at the end */
    KT_EXPECT_EQ(t, mb[1].base + mb[1].length, 64 * MIB);
    KT_EXPECT(t, kmm_port_of(ka) == kt_machine_port(a));
    KT_EXPECT(t, kmm_port_of(kb) == kt_machine_port(b));
    kmm_fini(ka);
    kmm_fini(kb);
    kt_machine_destroy(a);
    kt_machine_destroy(b);
}

KTEST(init, the_report_shows_the_map_and_its_totals)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    static struct kt_text tx;
    tx.len = 0;
    struct kmm_sink sink = {kt_text_write, &tx};
    kmm_report(k, &sink);
    KT_EXPECT(t, ktest_contains(tx.buf, "Physical memory map (6 ranges)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "[0x0000000000001000-0x000000000009efff] usable"));
    KT_EXPECT(t, ktest_contains(tx.buf, "kmm-metadata"));
    KT_EXPECT(t, ktest_contains(tx.buf, "4 CPUs"));
    KT_EXPECT(t, ktest_contains(tx.buf, "Free blocks per order (buddyinfo)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "Page tables (4 levels)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "tables L4 1 L3 256 L2 0 L1 0, 1.0 MiB"));
    KT_EXPECT(t, ktest_contains(tx.buf, "user spaces: 0, mapped 4K 0, 2M 0, 1G 0;"));
    KT_EXPECT(t, ktest_contains(tx.buf, "rejected misuse 0"));
    if (ktest_failed(t))
        ktest_diag(t, "report was:\n%s", tx.buf);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(init, each_report_section_alone_is_the_reports_text_of_that_section)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    static struct kt_text whole, parts;
    whole.len = 0;
    parts.len = 0;
    struct kmm_sink ws = {kt_text_write, &whole}, ps = {kt_text_write, &parts};
    kmm_report(k, &ws);
    /* kmm_report = its title line, then every section in order. */
    const char *body = whole.buf;
    while (*body && *body != '\n')
        body++;
    KT_ASSERT(t, *body == '\n');
    body++;
    for (unsigned s = 0; s < KMM_REPORT_SECTIONS; s++)
        KT_EXPECT_EQ(t, kmm_report_section(k, s, &ps), KMM_OK);
    KT_EXPECT(t, whole.len < sizeof(whole.buf) - 1); /* nothing cut */
    KT_EXPECT_STREQ(t, parts.buf, body);
    parts.len = 0;
    parts.buf[0] = '\0';
    KT_EXPECT_EQ(t, kmm_report_section(k, KMM_REPORT_BUDDYINFO, &ps), KMM_OK);
    KT_EXPECT(t, ktest_contains(parts.buf, "Free blocks per order (buddyinfo)"));
    KT_EXPECT(t, !ktest_contains(parts.buf, "Page allocator"));
    KT_EXPECT_HEALTHY(t, k);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(init, a_report_section_out_of_range_is_refused_counted_and_logged)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    static struct kt_text tx;
    tx.len = 0;
    tx.buf[0] = '\0';
    struct kmm_sink sink = {kt_text_write, &tx};
    struct kmm_misuse_stats before, after;
    kmm_misuse_stats(k, &before);
    KT_EXPECT_EQ(t, kmm_report_section(k, KMM_REPORT_SECTIONS, &sink), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_report_section(k, ~0u, &sink), KMM_EINVAL);
    kmm_misuse_stats(k, &after);
    KT_EXPECT_EQ(t, tx.len, 0); /* nothing written */
    KT_EXPECT_EQ(t,
                 after.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_ARG] -
                     before.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_ARG],
                 2);
    KT_EXPECT_EQ(t, after.total - before.total, 2);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(m), "kmm_report_section"));
    KT_EXPECT(t, ktest_streq(kmm_layer_name(KMM_LAYER_DIAG), "diag"));
    KT_EXPECT_HEALTHY(t, k);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(init, a_report_line_cut_at_its_length_limit_still_ends_its_line)
{
    struct kt_machine *m = kt_machine_create(t, small_pc, N(small_pc));
    if (!m)
        return;
    struct kmm_config cfg = config_for(m, small_pc, N(small_pc));
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    /* With a debugging mode on, the heap's debugging line is longer than
     * a report line may be (159 characters) and is cut. */
    KT_ASSERT(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_TRACK) >= 0);
    static struct kt_text tx;
    tx.len = 0;
    tx.buf[0] = '\0';
    struct kmm_sink sink = {kt_text_write, &tx};
    KT_EXPECT_EQ(t, kmm_report_section(k, KMM_REPORT_HEAP_DEBUG, &sink), KMM_OK);
    KT_ASSERT(t, tx.len > 0);
    size_t longest = 0, run = 0;
    for (size_t i = 0; i < tx.len; i++) {
        run = tx.buf[i] == '\n' ? 0 : run + 1;
        longest = run > longest ? run : longest;
    }
    KT_EXPECT(t, longest >= 150); /* the cut line is here */
    KT_EXPECT_EQ(t, tx.buf[tx.len - 1], '\n');
    tx.len = 0;
    kmm_report(k, &sink);
    KT_EXPECT(t, ktest_contains(tx.buf, "\nRejected calls (misuse): 0\n"));
    KT_EXPECT_HEALTHY(t, k);
    kmm_heap_debug(k, 0);
    kmm_fini(k);
    kt_machine_destroy(m);
}
