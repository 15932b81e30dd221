/*
 * stress.c - a malloc torture test, run by tests/malloc/programs.t with
 * libkmm-malloc.so preloaded (and without, against glibc, so that the test
 * itself is known to hold for a system malloc). An ordinary program: it
 * knows nothing of kmm. Parts, each a line of output:
 *
 *   first     the process's first allocation is aligned to 1 GiB
 *   edges     every call's edge cases: errno values, overflow, alignments up
 *             to 4 MiB (and more), malloc(0), usable sizes, errno kept by free
 *   threads   workers allocating, reallocating and freeing blocks with a fill
 *             pattern checked at every step, handing blocks to each other
 *             (cross-thread frees) while the main thread forks children that
 *             check, free and allocate in their copy
 *   exits     threads that exit with live blocks, freed later by main
 *   crowd     more threads at once than the library has CPUs
 *   misuse    (--kmm, for kmm-malloc only): a double free and a free of an
 *             interior pointer end the process with SIGABRT
 *   exhaust   (--exhaust alone, on a small machine: KMM_MALLOC_MIB=64) malloc
 *             fails with ENOMEM, and after everything is freed as many
 *             blocks fit again
 *
 * Exit status 0 if every check held; each failure is printed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

static atomic_int failures;
/* --kmm: also check what kmm-malloc promises beyond glibc 2.36 (misuse
 * aborts; aligned_alloc refuses an alignment that is no power of two). */
static bool beyond_glibc;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            atomic_fetch_add(&failures, 1);                                                        \
            fprintf(stderr, "stress: %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Hides a value from the compiler, which rejects calls it can prove are
 * wrong (a size above PTRDIFF_MAX, a free past a block's start): here they
 * are the point. */
static volatile size_t opaque_zero;

static size_t opaque(size_t v)
{
    return v + opaque_zero;
}

static void *opaque_ptr(void *p)
{
    return (void *)((uintptr_t)p + opaque_zero);
}

/* Whether an allocation that must fail did, with errno err (a block it
 * returned anyway is freed). */
static bool fails_with(void *p, int err)
{
    free(p);
    return !p && errno == err;
}

/* --- blocks with a fill pattern --------------------------------------------------------------- */

struct block {
    unsigned char *p;
    size_t size;
    uint32_t seed;
};

static unsigned char pattern(uint32_t seed, size_t i)
{
    return (unsigned char)((seed * 131u) ^ (uint32_t)(i * 7u) ^ (uint32_t)(i >> 9));
}

/*
 * The patterned bytes of a block: every byte of the first 16 KiB, then one
 * per 4 KiB (large blocks stay quick to check), and the block's last byte.
 */
#define DENSE  (16 * KIB)
#define SPARSE (4 * KIB)

static size_t first_pos(size_t from)
{
    return from < DENSE ? from : (from + SPARSE - 1) & ~(SPARSE - 1);
}

static size_t next_pos(size_t i)
{
    return i < DENSE ? i + 1 : i + SPARSE;
}

/* Writes the pattern from byte from on, and the last byte. */
static void fill(struct block *b, size_t from)
{
    for (size_t i = first_pos(from); i < b->size; i = next_pos(i))
        b->p[i] = pattern(b->seed, i);
    if (b->size)
        b->p[b->size - 1] = pattern(b->seed, b->size - 1);
}

/* Whether the patterned bytes below upto are intact. */
static bool intact(const struct block *b, size_t upto)
{
    for (size_t i = 0; i < upto && i < b->size; i = next_pos(i))
        if (b->p[i] != pattern(b->seed, i))
            return false;
    return !b->size || b->size > upto || b->p[b->size - 1] == pattern(b->seed, b->size - 1);
}

static bool aligned(const void *p, size_t align)
{
    return ((uintptr_t)p & (align - 1)) == 0;
}

/* --- first ---------------------------------------------------------------------------------- */

/* The process's first allocation (a malloc starts then) is an over-aligned
 * one: 1 GiB, which a 64-bit malloc can give. */
static void first_allocation_over_aligned(void)
{
    void *p = NULL;
    int err = posix_memalign(&p, (size_t)1 << 30, 100);
    CHECK(err == 0 && aligned(p, (size_t)1 << 30), "posix_memalign(1 GiB): %d, %p", err, p);
    if (!err)
        free(p);
}

/* --- edges ------------------------------------------------------------------------------------ */

static void edges_malloc(void)
{
    void *a = malloc(opaque(0)), *b = malloc(opaque(0));
    CHECK(a && b && a != b, "malloc(0): %p %p", a, b);
    free(a);
    free(b);
    errno = 0;
    CHECK(fails_with(malloc(opaque(SIZE_MAX)), ENOMEM), "malloc(SIZE_MAX): errno %d", errno);
    errno = 0;
    CHECK(fails_with(malloc(opaque(SIZE_MAX / 2)), ENOMEM), "malloc(SIZE_MAX / 2)");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
    static const size_t sizes[] = {
        1,    15,   16,   17,     100,       128,           129, 1000,        4095,    4096,
        4097, 8192, 8193, 100000, 128 * KIB, 128 * KIB + 1, MIB, 3 * MIB + 5, 64 * MIB};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p && aligned(p, 16), "malloc(%zu) = %p", sizes[i], (void *)p);
        if (!p)
            continue;
        size_t n = malloc_usable_size(p);
        CHECK(n >= sizes[i], "malloc_usable_size(malloc(%zu)) = %zu", sizes[i], n);
        memset(p, 0xa5, n); /* every usable byte is the caller's */
        errno = 4321;
        free(p);
        CHECK(errno == 4321, "free of %zu bytes changed errno to %d", sizes[i], errno);
    }
}

static void edges_calloc_realloc(void)
{
    errno = 0;
    CHECK(fails_with(calloc(opaque(SIZE_MAX / 2), 3), ENOMEM), "calloc overflow");
    errno = 0;
    CHECK(fails_with(calloc(opaque((size_t)1 << 33), (size_t)1 << 33), ENOMEM), "calloc 2^66");
    /* Dirty memory, freed, then calloc of the same sizes: zero. */
    for (size_t size = 16; size <= 4 * MIB; size *= 4) {
        void *d = malloc(size);
        if (d)
            memset(d, 0xee, size);
        free(d);
        unsigned char *z = calloc(1, size);
        CHECK(z != NULL, "calloc(1, %zu)", size);
        bool zero = true;
        for (size_t i = 0; z && i < size; i++)
            zero &= z[i] == 0;
        CHECK(zero, "calloc(1, %zu) is not zeroed", size);
        free(z);
    }
    void *c0 = calloc(0, 16);
    CHECK(c0 != NULL, "calloc(0, 16)");
    free(c0);

    struct block b = {malloc(10), 10, 7};
    fill(&b, 0);
    errno = 0;
    unsigned char *same = realloc(b.p, opaque(SIZE_MAX));
    CHECK(!same && errno == ENOMEM, "realloc(p, SIZE_MAX)");
    b.p = same ? same : b.p;
    CHECK(intact(&b, b.size), "realloc failure changed the block");
    errno = 0;
    same = reallocarray(b.p, opaque(SIZE_MAX / 4), 8);
    CHECK(!same && errno == ENOMEM, "reallocarray overflow");
    b.p = same ? same : b.p;
    CHECK(intact(&b, b.size), "reallocarray failure changed the block");
    /* A chain from 10 bytes to 8 MiB and back, contents kept each step. */
    for (size_t n = 10; n <= 8 * MIB; n = n * 3 + 1) {
        unsigned char *q = realloc(b.p, n);
        CHECK(q && aligned(q, 16), "realloc to %zu", n);
        if (!q)
            break;
        b.p = q;
        CHECK(intact(&b, b.size), "realloc to %zu lost contents", n);
        size_t old = b.size;
        b.size = n;
        fill(&b, old);
    }
    for (size_t n = b.size; n > 8; n /= 5) {
        unsigned char *q = reallocarray(b.p, n, 1);
        CHECK(q != NULL, "reallocarray down to %zu", n);
        if (!q)
            break;
        b.p = q;
        CHECK(intact(&b, n), "shrinking realloc to %zu lost contents", n);
        b.size = n;
        fill(&b, n);
    }
    void *z = realloc(b.p, 0); /* frees b.p; NULL or a unique block */
    free(z);
    void *fresh = realloc(NULL, 100);
    CHECK(fresh != NULL, "realloc(NULL, 100)");
    free(fresh);
}

static void edges_aligned(void)
{
    void *sentinel = (void *)0x1234, *p = sentinel;
    static const size_t bad[] = {0, 1, 2, 4, 3, 24, 48, 100, 4097};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bad[i] == sizeof(void *))
            continue;
        int r = posix_memalign(&p, bad[i], 64);
        CHECK(r == EINVAL && p == sentinel, "posix_memalign(align %zu): %d, memptr %p", bad[i], r,
              p);
    }
    int r = posix_memalign(&p, 64, opaque(SIZE_MAX - 4096));
    CHECK(r == ENOMEM && p == sentinel, "posix_memalign huge: %d", r);
    if (beyond_glibc) { /* glibc 2.36 rounds these up; 2.38 returns EINVAL too */
        errno = 0;
        CHECK(fails_with(aligned_alloc(opaque(3), 64), EINVAL), "aligned_alloc(3)");
        errno = 0;
        CHECK(fails_with(aligned_alloc(opaque(0), 64), EINVAL), "aligned_alloc(0)");
    }
    errno = 0;
    CHECK(fails_with(aligned_alloc(4096, opaque(SIZE_MAX - 8192)), ENOMEM), "aligned_alloc huge");

    static const size_t sizes[] = {0, 1, 100, 5000, 100 * KIB, 200 * KIB, 3 * MIB, 5 * MIB};
    for (size_t align = sizeof(void *); align <= 8 * MIB; align *= 2) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t size = sizes[i];
            void *a = NULL;
            CHECK(posix_memalign(&a, align, size) == 0 && aligned(a, align) && aligned(a, 16),
                  "posix_memalign(%zu, %zu) = %p", align, size, a);
            void *b = aligned_alloc(align, size);
            CHECK(b && aligned(b, align), "aligned_alloc(%zu, %zu) = %p", align, size, b);
            void *c = memalign(align, size);
            CHECK(c && aligned(c, align), "memalign(%zu, %zu) = %p", align, size, c);
            void *blocks[] = {a, b, c};
            for (int j = 0; j < 3; j++) {
                if (!blocks[j])
                    continue;
                size_t n = malloc_usable_size(blocks[j]);
                CHECK(n >= size, "usable %zu < %zu (align %zu)", n, size, align);
                memset(blocks[j], 0x3c, size);
            }
            /* An over-aligned block reallocates like any other. */
            struct block g = {a, size, (uint32_t)align};
            fill(&g, 0);
            unsigned char *q = realloc(a, size + 10000);
            CHECK(q != NULL, "realloc of an aligned block");
            if (q) {
                g.p = q;
                CHECK(intact(&g, size), "realloc of an aligned block lost contents");
                a = q;
            }
            errno = 99;
            free(a);
            free(b);
            free(c);
            CHECK(errno == 99, "free of an aligned block changed errno");
        }
    }
    /* Alignments past any machine's: a block aligned as asked, or ENOMEM. */
    for (size_t align = (size_t)2 << 30; align <= (size_t)16 << 30; align *= 2) {
        void *huge = NULL;
        int err = posix_memalign(&huge, align, 100);
        CHECK(err == ENOMEM || (err == 0 && aligned(huge, align)),
              "posix_memalign(%zu GiB): %d, %p", align >> 30, err, huge);
        if (!err)
            free(huge);
    }
    void *m = memalign(opaque(48), 10); /* glibc rounds 48 up to 64 */
    CHECK(m && aligned(m, 64), "memalign(48) = %p", m);
    free(m);
    void *v = valloc(10);
    CHECK(v && aligned(v, 4096), "valloc = %p", v);
    free(v);
    void *pv = pvalloc(5000);
    CHECK(pv && aligned(pv, 4096) && malloc_usable_size(pv) >= 8192, "pvalloc(5000)");
    free(pv);
    errno = 0;
    CHECK(fails_with(pvalloc(opaque(SIZE_MAX - 10)), ENOMEM), "pvalloc overflow");
}

/* --- threads and fork ------------------------------------------------------------------------- */

#define WORKERS    6
#define LIVE       192
#define EXCHANGE   512
#define FORKS      16
#define PRE_FORK   64
#define WORKER_OPS 8000 /* at least, and until the forks are done */

struct rng {
    uint64_t s;
};

static uint64_t next(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

/* Mostly small, some pages, a few vmalloc-sized. */
static size_t pick_size(struct rng *r)
{
    unsigned k = (unsigned)(next(r) % 100);
    if (k < 70)
        return (size_t)(next(r) % 300);
    if (k < 90)
        return 300 + (size_t)(next(r) % (8 * KIB));
    if (k < 98)
        return 8 * KIB + (size_t)(next(r) % (120 * KIB));
    return 128 * KIB + (size_t)(next(r) % MIB);
}

static bool alloc_block(struct rng *r, struct block *b)
{
    b->p = NULL;
    b->size = pick_size(r);
    b->seed = (uint32_t)next(r);
    unsigned how = (unsigned)(next(r) % 20);
    if (how == 0) {
        size_t align = (size_t)16 << (next(r) % 14); /* 16 .. 128 KiB */
        if (next(r) % 16 == 0)
            align = 2 * MIB;
        void *p = NULL;
        if (posix_memalign(&p, align, b->size) != 0)
            return false;
        CHECK(aligned(p, align), "posix_memalign(%zu) = %p", align, p);
        b->p = p;
    } else if (how == 1) {
        b->p = calloc(1, b->size);
        for (size_t i = 0; b->p && i < b->size; i = next_pos(i))
            CHECK(b->p[i] == 0, "calloc(%zu) byte %zu", b->size, i);
    } else {
        b->p = malloc(b->size);
    }
    if (!b->p)
        return false;
    CHECK(aligned(b->p, 16), "%p", (void *)b->p);
    fill(b, 0);
    return true;
}

static void free_block(struct block *b)
{
    CHECK(intact(b, b->size), "block %p of %zu bytes was overwritten", (void *)b->p, b->size);
    free(b->p);
    b->p = NULL;
}

static struct block exchange[EXCHANGE];
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool stop;

/* Puts b in the exchange; whatever was in that place is freed here. */
static void hand_over(struct rng *r, struct block *b)
{
    size_t i = (size_t)(next(r) % EXCHANGE);
    pthread_mutex_lock(&exchange_lock);
    struct block old = exchange[i];
    exchange[i] = *b;
    pthread_mutex_unlock(&exchange_lock);
    b->p = NULL;
    if (old.p)
        free_block(&old);
}

static void *worker(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15u + 1};
    struct block live[LIVE] = {{0}};
    unsigned long ops = 0;
    while (!atomic_load(&stop) || ops < WORKER_OPS) {
        struct block *b = &live[next(&r) % LIVE];
        ops++;
        if (!b->p) {
            CHECK(alloc_block(&r, b), "allocation failed");
            continue;
        }
        unsigned what = (unsigned)(next(&r) % 10);
        if (what < 4) {
            size_t n = pick_size(&r);
            CHECK(intact(b, b->size), "before realloc");
            unsigned char *q = realloc(b->p, n);
            if (!q && n == 0) { /* glibc frees instead */
                b->p = NULL;
                continue;
            }
            CHECK(q != NULL, "realloc(%zu)", n);
            if (!q)
                continue;
            b->p = q;
            CHECK(intact(b, b->size < n ? b->size : n), "realloc to %zu lost contents", n);
            size_t old = b->size;
            b->size = n;
            fill(b, old < n ? old : n);
        } else if (what < 8) {
            free_block(b);
        } else {
            hand_over(&r, b);
        }
    }
    for (size_t i = 0; i < LIVE; i++)
        if (live[i].p)
            free_block(&live[i]);
    return NULL;
}

/* Deep enough into its CPU's caches to use whatever the fork left there. */
static void *child_thread(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg};
    struct block b[150];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 150; i++)
            CHECK(alloc_block(&r, &b[i]), "child thread allocation");
        for (int i = 0; i < 150; i++)
            if (b[i].p)
                free_block(&b[i]);
    }
    return NULL;
}

/* In a child forked while the workers run: the parent's blocks are
 * intact and freeable, and the heap serves new blocks and threads. */
static int child_work(struct block *mine, size_t n, unsigned round)
{
    int before = atomic_load(&failures);
    for (size_t i = 0; i < n; i++)
        free_block(&mine[i]);
    struct rng r = {round + 99u};
    struct block b[64];
    for (int i = 0; i < 64; i++)
        CHECK(alloc_block(&r, &b[i]), "child allocation");
    /* As many threads as the parent had: between them they run on every
     * CPU the parent's threads used, whatever state the fork left there. */
    pthread_t th[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&th[i], NULL, child_thread,
                             (void *)((uintptr_t)round * 100 + i + 1)) == 0,
              "child thread");
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 64; i++)
        if (b[i].p)
            free_block(&b[i]);
    return atomic_load(&failures) != before;
}

/*
 * Fork handlers that allocate. Registered by a constructor, before anything
 * else in the program allocates, so before the malloc's own (which it
 * registers when it starts, at the first allocation): prepare handlers run
 * last registered first, so this prepare runs after the malloc's has made
 * its heap quiet for the fork, and must still be able to allocate.
 */
static atomic_int fork_handler_blocks;

static void fork_handler_allocates(void)
{
    void *p = malloc(200);
    void *q = malloc(300 * KIB);
    CHECK(p && q, "allocation in a fork handler");
    atomic_fetch_add(&fork_handler_blocks, (p != NULL) + (q != NULL));
    free(p);
    free(q);
}

__attribute__((constructor(101))) static void register_fork_handlers(void)
{
    pthread_atfork(fork_handler_allocates, fork_handler_allocates, fork_handler_allocates);
}

static void forks_while_workers_run(void)
{
    struct rng r = {77};
    for (unsigned round = 0; round < FORKS; round++) {
        struct block mine[PRE_FORK];
        for (size_t i = 0; i < PRE_FORK; i++)
            CHECK(alloc_block(&r, &mine[i]), "pre-fork allocation");
        usleep(500);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) /* exit runs the atexit handlers: a malloc may check its heap there */
            exit(child_work(mine, PRE_FORK, round));
        CHECK(pid > 0, "fork");
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "forked child %u: status %#x", round, status);
        for (size_t i = 0; i < PRE_FORK; i++)
            free_block(&mine[i]); /* untouched by the child's frees */
    }
    CHECK(atomic_load(&fork_handler_blocks) == 4 * FORKS, "the fork handlers allocated %d blocks",
          atomic_load(&fork_handler_blocks));
}

static void threads(void)
{
    pthread_t th[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&th[i], NULL, worker, (void *)(i + 1)) == 0, "pthread_create");
    forks_while_workers_run();
    atomic_store(&stop, true);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    for (size_t i = 0; i < EXCHANGE; i++)
        if (exchange[i].p)
            free_block(&exchange[i]);
}

/* --- threads that exit with live blocks ------------------------------------------------------- */

#define EXITERS     24
#define LEFT_BEHIND 100

static void *leave_blocks(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg * 1000003u};
    struct block *b = malloc(LEFT_BEHIND * sizeof(*b));
    for (size_t i = 0; b && i < LEFT_BEHIND; i++)
        CHECK(alloc_block(&r, &b[i]), "allocation before exit");
    return b;
}

static void exits(void)
{
    for (int wave = 0; wave < 3; wave++) {
        pthread_t th[EXITERS];
        struct block *left[EXITERS];
        for (uintptr_t i = 0; i < EXITERS; i++)
            CHECK(pthread_create(&th[i], NULL, leave_blocks,
                                 (void *)(i + 1 + (uintptr_t)wave * 100)) == 0,
                  "pthread_create");
        for (int i = 0; i < EXITERS; i++)
            pthread_join(th[i], (void **)&left[i]);
        for (int i = 0; i < EXITERS; i++) {
            for (size_t j = 0; left[i] && j < LEFT_BEHIND; j++) {
                struct block *b = &left[i][j];
                if (j % 3 == 0 && b->p) { /* realloc first, then free */
                    unsigned char *q = realloc(b->p, b->size + 1000);
                    CHECK(q != NULL, "realloc of a dead thread's block");
                    if (q)
                        b->p = q;
                }
                if (b->p)
                    free_block(b);
            }
            free(left[i]);
        }
    }
}

/* --- a crowd: more threads than CPUs ---------------------------------------------------------- */

#define CROWD 300

static pthread_barrier_t crowd_barrier;

static void *crowd_member(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg + 5};
    struct block b[8];
    for (int i = 0; i < 8; i++)
        CHECK(alloc_block(&r, &b[i]), "crowd allocation");
    pthread_barrier_wait(&crowd_barrier); /* all alive at once */
    for (int i = 0; i < 8; i++)
        if (b[i].p)
            free_block(&b[i]);
    return NULL;
}

static void crowd(void)
{
    static pthread_t th[CROWD];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * KIB);
    pthread_barrier_init(&crowd_barrier, NULL, CROWD);
    int made = 0;
    for (uintptr_t i = 0; i < CROWD; i++, made++)
        if (pthread_create(&th[i], &attr, crowd_member, (void *)i) != 0)
            break;
    CHECK(made == CROWD, "only %d threads", made);
    if (made != CROWD)
        abort(); /* the barrier would wait for ever */
    for (int i = 0; i < made; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&crowd_barrier);
    pthread_attr_destroy(&attr);
}

/* --- misuse ----------------------------------------------------------------------------------- */

/* The bugs these call for, hidden from the static analysers. */
static void double_free(void)
{
    void *p = malloc(100);
    free(opaque_ptr(p));
    free(opaque_ptr(p));
}

static void interior_free(void)
{
    char *p = malloc(100);
    free((char *)opaque_ptr(p) + 16);
    free(p); /* not reached */
}

static void expect_abort(const char *what, void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: status %#x", what, status);
}

static void misuse(void)
{
    expect_abort("double free", double_free);
    expect_abort("free of an interior pointer", interior_free);
}

/* --- exhaustion (--exhaust, on a small machine: KMM_MALLOC_MIB=64) ---------------------------- */

#define EXHAUST_MAX 1000000 /* blocks: a machine larger than asked for ends the loop */

/* Allocates blocks of size until malloc fails (ENOMEM), frees them all;
 * returns how many there were. */
static size_t fill_up(size_t size, void **blocks)
{
    size_t n = 0;
    errno = 0;
    while (n < EXHAUST_MAX && (blocks[n] = malloc(size)) != NULL)
        memset(blocks[n++], 0x5a, size < 64 ? size : 64);
    CHECK(n < EXHAUST_MAX && errno == ENOMEM, "%zu blocks of %zu, errno %d", n, size, errno);
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    return n;
}

/* Memory runs out cleanly, and all of it comes back: the same number of
 * blocks fits again, of either size, in either order. */
static void exhaust(void)
{
    void **blocks = mmap(NULL, EXHAUST_MAX * sizeof(void *), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(blocks != MAP_FAILED, "mmap");
    if (blocks == MAP_FAILED)
        return;
    size_t big = fill_up(256 * KIB, blocks), small = fill_up(100, blocks);
    size_t big_again = fill_up(256 * KIB, blocks), small_again = fill_up(100, blocks);
    /* The heap may keep a few empty slabs cached: 1 MiB at most. */
    CHECK(big > 0 && big_again + 4 >= big, "256 KiB blocks: %zu, then %zu", big, big_again);
    CHECK(small > 0 && small_again >= small - small / 100, "100-byte blocks: %zu, then %zu", small,
          small_again);
    void *p = malloc(100);
    CHECK(p != NULL, "malloc after exhaustion");
    free(p);
    munmap(blocks, EXHAUST_MAX * sizeof(void *));
}

/* --- main ------------------------------------------------------------------------------------- */

static void part(const char *name, void (*fn)(void))
{
    int before = atomic_load(&failures);
    fn();
    printf("%s %s\n", atomic_load(&failures) == before ? "ok" : "FAILED", name);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--exhaust") == 0) {
        part("exhaust: out of memory and back", exhaust);
        return atomic_load(&failures) ? 1 : 0;
    }
    beyond_glibc = argc > 1 && strcmp(argv[1], "--kmm") == 0;
    part("first: an over-aligned block is the first allocation", first_allocation_over_aligned);
    part("edges: malloc", edges_malloc);
    part("edges: calloc and realloc", edges_calloc_realloc);
    part("edges: aligned", edges_aligned);
    part("threads: cross-thread frees, realloc chains, aligned blocks, fork", threads);
    part("exits: blocks outlive their threads", exits);
    part("crowd: more threads than CPUs", crowd);
    if (beyond_glibc)
        part("misuse: double and interior frees abort", misuse);
    return atomic_load(&failures) ? 1 : 0;
}
