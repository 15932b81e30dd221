/*
 * boruix_cmds.h - the Boruix shell's memory commands (memtest, heaptest,
 * pgtest, vmmtest, memprottest; issue 12 and 13) for the debug shell
 * (shell.h), in kernel/shell/boruix_cmds.c.
 *
 * They run the tests of Boruix's own shell through the Boruix interface
 * (boruix/rust_memory.h) only, so they exercise it the way Boruix does; each
 * step prints "[TEST n] ..." and "[OK] ..." or "[FAIL] ...", and the
 * command ends in one line "<name>: PASS (...)" or "<name>: FAIL (...)".
 *
 * The interface works on one global instance (compat/world.h): a host
 * makes its shell's instance that one (kmm_boruix_adopt) before it offers
 * these commands, through kshell_config.extra:
 *
 *     size_t n;
 *     cfg.extra = kshell_boruix_commands(&n);
 *     cfg.extra_count = n;
 *
 * A command run while the interface's instance is not the shell's refuses
 * with an error line and runs nothing. pgtest maps Boruix's fixed address
 * (the heap window's first page: 0xFFFFFFFF90000000 in a kernel) and
 * memprottest the one 16 MiB above it (kmm_boruix_heap_window gives the
 * window as the world has it); both must be unmapped when they start.
 */
#ifndef KMM_KSHELL_BORUIX_CMDS_H
#define KMM_KSHELL_BORUIX_CMDS_H

#include <stddef.h>

#include "shell.h"

/* The five commands, in the order `help` lists them; *count gets 5. */
const struct kshell_cmd *kshell_boruix_commands(size_t *count);

#endif /* KMM_KSHELL_BORUIX_CMDS_H */
