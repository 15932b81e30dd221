/*
 * user_cmd.h - the shell's `user` command (kernel/user_cmd.c): without an
 * argument it lists the ring-3 programs (user.h); `user <program>` runs one
 * and prints "user: <name> exited with status N" or "user: <name> killed
 * by <exception> at rip R (address A)", then its system calls, resolved
 * page faults and children, and the free page count before and after
 * ("all back", or "LEAK" and a failed command).
 */
#ifndef KMM_KERNEL_USER_CMD_H
#define KMM_KERNEL_USER_CMD_H

#include "shell.h"

const struct kshell_cmd *kshell_user_command(void);

#endif /* KMM_KERNEL_USER_CMD_H */
