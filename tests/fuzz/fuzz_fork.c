/*
 * fuzz_fork.c - a libFuzzer target for fork, demand zero and copy-on-write:
 * each input drives one run of tests/test_vm_fork_random.c (a tree of
 * cloned user spaces whose pages come and go, written and read as a CPU
 * would, kmm_vm_fault resolving what fork semantics say it must), checked
 * against its shadow model after every step, then every space destroyed
 * with every frame accounted for and kmm_check clean. Built by
 * `make fuzz-targets`.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_run("vm_fork_random.a_tree_of_forked_spaces_driven_by_bytes_matches_the_shadow",
                    data, size);
}
