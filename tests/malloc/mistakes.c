/*
 * mistakes.c - a program with the bugs the preloadable malloc's debugging
 * switches are for, run by tests/malloc/programs.t under libkmm-malloc.so
 * (KMM_MALLOC_DEBUG, KMM_MALLOC_REPORT). An ordinary program: it knows
 * nothing of kmm. One mistake per run, named by the argument:
 *
 *   leaks      LEAK_A_BLOCKS blocks of LEAK_A_BYTES from one call site and
 *              LEAK_B_BLOCKS of LEAK_B_BYTES from another, never freed;
 *              blocks from a third site that an atexit handler frees (no
 *              leak: the report runs after it)
 *   overrun    writes one byte past a block, then frees it
 *   afterfree  writes into a block after freeing it, then allocates again
 *   clean      no mistake
 *
 * The lines of the calls that the reports must name carry a marker comment
 * ("site: NAME") that the test looks up. Prints "done" and exits 0 if the
 * mistake went unnoticed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEAK_A_BLOCKS 3
#define LEAK_A_BYTES  100
#define LEAK_B_BLOCKS 2
#define LEAK_B_BYTES  1000
#define FREED_BLOCKS  5
#define BLOCK         24
/* A block written after its free, and where: past the free list's link
 * and the free caller that the heap keeps in a free object (kmm/heap.h,
 * KMM_HEAP_DEBUG_POISON), so that the write lands in its poison. */
#define FREED_BLOCK   64
#define FREED_WRITE   48
/* Allocations after the write after free, so that the block is handed out
 * again however the allocator orders its free blocks. */
#define REUSE_TRIES   1000

/* Hides values from the compiler, which would otherwise see the bugs. */
static volatile size_t opaque_size = BLOCK, opaque_freed = FREED_BLOCK;
static volatile int opaque_a = LEAK_A_BLOCKS, opaque_b = LEAK_B_BLOCKS;
static void *volatile sink;
/* free, out of the static analyser's sight: the write after it is the bug. */
static void (*volatile release)(void *) = free;

static void *freed_at_exit[FREED_BLOCKS];

static __attribute__((noinline)) void leak_a(void)
{
    for (int i = 0; i < opaque_a; i++)
        sink = malloc(LEAK_A_BYTES); /* site: leak_a */
}

static __attribute__((noinline)) void leak_b(void)
{
    for (int i = 0; i < opaque_b; i++)
        sink = calloc(1, LEAK_B_BYTES); /* site: leak_b */
}

static void free_at_exit(void)
{
    for (int i = 0; i < FREED_BLOCKS; i++)
        free(freed_at_exit[i]);
}

static void leaks(void)
{
    for (int i = 0; i < FREED_BLOCKS; i++)
        freed_at_exit[i] = malloc(LEAK_A_BYTES + 1);
    atexit(free_at_exit);
    leak_a();
    leak_b();
}

static void overrun(void)
{
    char *p = malloc(opaque_size);   /* site: overrun_malloc */
    memset(p, 'x', opaque_size + 1); /* one byte too many */
    free(p);                         /* site: overrun_free */
}

static void after_free(void)
{
    char *p = malloc(opaque_freed);
    release(p); /* site: afterfree_free */
    p[FREED_WRITE] = 'x';
    for (int i = 0; i < REUSE_TRIES; i++)
        sink = malloc(opaque_freed); /* site: afterfree_malloc */
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "leaks") == 0)
        leaks();
    else if (strcmp(what, "overrun") == 0)
        overrun();
    else if (strcmp(what, "afterfree") == 0)
        after_free();
    else if (strcmp(what, "clean") != 0) {
        fprintf(stderr, "usage: mistakes leaks|overrun|afterfree|clean\n");
        return 2;
    }
    printf("done\n");
    return 0;
}
