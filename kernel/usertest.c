/*
 * usertest.c - the ring-3 checks of the self-test mode (user.h): each runs
 * a program in a space of its own and checks how it ended, what the CPU
 * reported, and that every page came back once its space was destroyed.
 */
#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#include "hwtest.h"
#include "kernel.h"
#include "trap.h"
#include "user.h"

#define X86_RET 0xC3

static uint64_t free_pages(void)
{
    struct kmm_page_stats s;
    kmm_page_stats(kernel_kmm, &s);
    return s.free_pages;
}

/* The calls the library refused as the kernel's mistakes: a program's bad
 * pointer must never become one (user.c checks before it asks). */
static uint64_t vm_misuse(void)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(kmm_kernel_aspace(kernel_kmm), &s);
    return s.misuse;
}

/* Runs the program called name; *r says how it ended. Expects it to start,
 * every page back afterwards, no call refused as misuse, and kmm_check
 * clean. */
static void run(struct ktest *t, const char *name, struct user_result *r)
{
    const struct user_prog *p = user_prog_find(name);
    KT_ASSERT(t, p != NULL);
    uint64_t before = free_pages(), misuse = vm_misuse();
    KT_ASSERT_EQ(t, user_run(kernel_kmm, p, r), KMM_OK);
    KT_EXPECT_EQ(t, free_pages(), before);
    KT_EXPECT_EQ(t, vm_misuse(), misuse);
    struct kmm_check_result cr;
    KT_EXPECT_EQ(t, kmm_check(kernel_kmm, &cr), KMM_CHECK_OK);
}

/* Runs name and expects it to exit with status 0 (its checks held); *r
 * for more. */
static void expect_exit_0(struct ktest *t, const char *name, struct user_result *r)
{
    run(t, name, r);
    KT_EXPECT(t, !r->killed);
    KT_EXPECT_EQ(t, r->status, 0);
}

KHW_TEST(user, a_program_in_ring_3_writes_through_a_system_call_and_exits_0)
{
    struct user_result r = {0};
    expect_exit_0(t, "hello", &r);
    KT_EXPECT_EQ(t, r.syscalls, 2u);
}

KHW_TEST(user, a_program_uses_8_kib_of_its_own_stack)
{
    struct user_result r = {0};
    expect_exit_0(t, "stack", &r);
}

KHW_TEST(user, a_read_of_kernel_memory_from_ring_3_is_a_page_fault_that_kills_only_the_program)
{
    struct user_result r = {0};
    run(t, "kread", &r);
    KT_EXPECT(t, r.killed);
    KT_EXPECT_EQ(t, r.status, -1);
    KT_EXPECT_EQ(t, r.fault.vector, (uint64_t)TRAP_PF);
    /* Present (the kernel's text is mapped), a read, from user mode. */
    KT_EXPECT_EQ(t, r.fault.error, (uint64_t)(PF_PRESENT | PF_USER));
    KT_EXPECT_EQ(t, r.fault.addr, (uint64_t)(uintptr_t)&user_run);
    KT_EXPECT_EQ(t, r.fault.rip, USER_CODE_VA);
}

KHW_TEST(user, a_privileged_instruction_in_ring_3_is_a_general_protection_fault)
{
    struct user_result r = {0};
    run(t, "priv", &r);
    KT_EXPECT(t, r.killed);
    KT_EXPECT_EQ(t, r.fault.vector, (uint64_t)TRAP_GP);
    KT_EXPECT_EQ(t, r.fault.rip, USER_CODE_VA);
}

KHW_TEST(user, write_refuses_kernel_non_canonical_and_unmapped_buffers_with_efault)
{
    struct user_result r = {0};
    expect_exit_0(t, "badwrite", &r);
}

/* Ring 3 may set RFLAGS.AC, SMAP's window, and an exception does not clear
 * it: isr.S does, so the kernel never handles a program's trap with user
 * pages open to it; the program gets its flag back on return. */
KHW_TEST(user, a_program_s_rflags_ac_never_opens_smap_s_window_in_the_kernel)
{
    struct user_result r = {0};
    expect_exit_0(t, "acflag", &r);
    KT_EXPECT_EQ(t, r.syscalls, 2u);
    if (trap_smap_on())
        KT_EXPECT_EQ(t, r.kernel_ac, 0u);
}

/* A hostile program's calls: a number the kernel does not have, and forks
 * from every child until the kernel's depth bound refuses one. Each gets
 * its error back, the program goes on, and every page comes back. */
KHW_TEST(user, an_unknown_system_call_is_enosys_and_the_program_goes_on)
{
    struct user_result r = {0};
    expect_exit_0(t, "badcall", &r);
    KT_EXPECT_EQ(t, r.syscalls, 2u);
}

KHW_TEST(user, forks_past_the_depth_bound_are_refused_with_eagain)
{
    struct user_result r = {0};
    expect_exit_0(t, "deep", &r);
    KT_EXPECT_EQ(t, r.forks, (uint64_t)(USER_FORK_DEPTH - 1));
}

KHW_TEST(user, user_run_refuses_a_missing_program_and_leaves_nothing)
{
    struct user_result r = {0};
    uint64_t before = free_pages();
    KT_EXPECT_EQ(t, user_run(kernel_kmm, NULL, &r), KMM_EINVAL);
    KT_EXPECT(t, user_prog_find("no such program") == NULL);
    KT_EXPECT_EQ(t, free_pages(), before);
}

KHW_TEST(user, a_program_reads_zeros_from_its_demand_zero_heap_and_keeps_what_it_writes)
{
    struct user_result r = {0};
    expect_exit_0(t, "heap", &r);
    KT_EXPECT_EQ(t, r.faults_resolved, (uint64_t)USER_HEAP_PAGES); /* one first touch a page */
}

KHW_TEST(user, a_forked_child_writes_its_own_copies_and_the_parent_keeps_its_pages)
{
    struct user_result r = {0};
    expect_exit_0(t, "fork", &r);
    KT_EXPECT_EQ(t, r.forks, 1u);
    /* The child's data and stack pages copied, the parent's data page taken
     * back in place: three faults at least (its code pages are read-only). */
    KT_EXPECT(t, r.faults_resolved >= 3);
    ktest_diag(t, "%llu page faults resolved", (unsigned long long)r.faults_resolved);
}

/* SMEP and SMAP (trap.c): with a user space active, the kernel's fetch from
 * a user page and its read of one fault, as present pages accessed by the
 * kernel (no user bit in the error code); the read goes through inside
 * trap_user_access_begin/end. */
KHW_TEST(user, the_kernel_neither_runs_nor_reads_a_user_page_unless_it_says_so)
{
    if (!trap_smep_on() || !trap_smap_on()) {
        ktest_skip(t, "the CPU has no SMEP or no SMAP (QEMU -cpu max has both)");
        return;
    }
    uint64_t before = free_pages();
    struct kmm_aspace *as;
    KT_ASSERT_EQ(t, kmm_aspace_create(kernel_kmm, &as), KMM_OK);
    uint64_t pa = kmm_page_alloc(kernel_kmm, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, pa != 0);
    *(volatile uint8_t *)phys_to_virt(pa) = X86_RET;
    KT_EXPECT_EQ(t,
                 kmm_vm_map(as, USER_CODE_VA, pa, KMM_PAGE_4K,
                            KMM_PROT_READ | KMM_PROT_EXEC | KMM_PROT_USER | KMM_MAP_OWNED),
                 KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, pa, 0), KMM_OK); /* the mapping's now */
    const void *code = (const void *)(uintptr_t)USER_CODE_VA;
    struct trap_fault fetch, read;
    /* The space the page-fault handler resolves in too: it must leave
     * these faults alone (trap.c), not call them spurious and loop. */
    trap_activate_space(as);
    bool fetch_faulted = trap_probe_exec(code, &fetch);
    bool read_faulted = trap_probe_read(code, &read);
    trap_user_access_begin();
    uint8_t byte = *(const volatile uint8_t *)code;
    trap_user_access_end();
    trap_activate_space(NULL);
    KT_EXPECT(t, fetch_faulted);
    KT_EXPECT_EQ(t, fetch.vector, (uint64_t)TRAP_PF);
    KT_EXPECT_EQ(t, fetch.error, (uint64_t)(PF_PRESENT | PF_FETCH));
    KT_EXPECT(t, read_faulted);
    KT_EXPECT_EQ(t, read.vector, (uint64_t)TRAP_PF);
    KT_EXPECT_EQ(t, read.error, (uint64_t)PF_PRESENT);
    KT_EXPECT_EQ(t, byte, X86_RET);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(kernel_kmm, as), KMM_OK);
    KT_EXPECT_EQ(t, free_pages(), before);
}
