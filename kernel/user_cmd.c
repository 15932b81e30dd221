/*
 * user_cmd.c - the shell's `user` command: list the ring-3 programs, or
 * run one and say how it ended and whether its memory all came back
 * (contract: user_cmd.h; the programs: user.h).
 */
#include <kmm/kmm.h>
#include <kmm/page.h>

#include "shell.h"
#include "user.h"
#include "user_cmd.h"

static uint64_t free_pages(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    return s.free_pages;
}

static int cmd_user(struct kshell *sh, unsigned argc, char **argv)
{
    unsigned n;
    const struct user_prog *progs = user_progs(&n);
    if (argc < 2) {
        kshell_printf(sh, "user <program>: run a program in ring 3, in a space of its own\n");
        for (unsigned i = 0; i < n; i++)
            kshell_printf(sh, "  %-9s %s\n", progs[i].name, progs[i].what);
        return 0;
    }
    const struct user_prog *p = user_prog_find(argv[1]);
    if (!p || argc > 2) {
        kshell_printf(sh, "user: %s: no such program (user lists them)\n", argv[1]);
        return 1;
    }
    struct kmm *k = sh->cfg.k;
    uint64_t before = free_pages(k);
    struct user_result r;
    int err = user_run(k, p, &r);
    if (err) {
        kshell_printf(sh, "user: %s did not start: %s\n", p->name, kmm_strerror(err));
        return 1;
    }
    uint64_t after = free_pages(k);
    if (r.killed && r.fault.vector == TRAP_PF)
        kshell_printf(sh, "user: %s killed by %s at rip 0x%llx (address 0x%llx)\n", p->name,
                      trap_name(r.fault.vector), (unsigned long long)r.fault.rip,
                      (unsigned long long)r.fault.addr);
    else if (r.killed)
        kshell_printf(sh, "user: %s killed by %s at rip 0x%llx\n", p->name,
                      trap_name(r.fault.vector), (unsigned long long)r.fault.rip);
    else
        kshell_printf(sh, "user: %s exited with status %lld\n", p->name, (long long)r.status);
    kshell_printf(sh,
                  "user: %llu system calls, %llu page faults resolved, %llu children; free "
                  "pages %llu before, %llu after: %s\n",
                  (unsigned long long)r.syscalls, (unsigned long long)r.faults_resolved,
                  (unsigned long long)r.forks, (unsigned long long)before,
                  (unsigned long long)after, before == after ? "all back" : "LEAK");
    return before == after ? 0 : 1;
}

static const struct kshell_cmd user_cmd = {"user", "[program]",
                                           "run a program in ring 3 (none: list them)", cmd_user};

const struct kshell_cmd *kshell_user_command(void)
{
    return &user_cmd;
}
