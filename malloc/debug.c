/*
 * debug.c - the preloadable malloc's debugging switches, what it says when
 * the heap finds a mistake, and the reports at exit. The switches are read
 * once, when the instance is made (the first call of the process):
 *
 *   KMM_MALLOC_DEBUG=m[,m...]  the heap's debugging modes (kmm/heap.h) for
 *       every size class, from the first block on: redzone, poison,
 *       quarantine, track, events (all: the five), and guard[:N] (every Nth
 *       allocation up to a page on a guard page, KMM_HEAP_GUARD_SLOTS at a
 *       time; N PM_GUARD_EVERY_DEFAULT if not given). Blocks over
 *       KMM_HEAP_SLAB_MAX are whole pages or vmalloc'd: no red zones, poison
 *       or tracking (a write past such a block's last page faults).
 *   KMM_MALLOC_REPORT=what     at exit: stats (the heap's figures and
 *       kmm_report: memory, slabinfo, the debugging state, rejected calls),
 *       leaks (the blocks still live, by call site; switches track on), or
 *       all (both)
 *   KMM_MALLOC_REPORT_FILE=path  appended to that file (opened at the first
 *       call) instead of stderr
 *   KMM_MALLOC_STATS=1|/path   (older) the figures and kmm_report alone, on
 *       stderr or appended to the file
 *   KMM_MALLOC_CHECK=1|/path   kmm_check at exit with every thread held
 *       still, its verdict on stderr or appended to the file; abort if it
 *       finds anything
 * stderr is the one the program had at its first call (a duplicate): some
 * programs (ls) close theirs before exit.
 *
 * A value it does not know gets one line on stderr and is ignored: the
 * program runs as if it were not set.
 *
 * Call sites. Each allocation is tracked at the return address of the call
 * to malloc (calloc, realloc, ...): in the program, or in the library that
 * called malloc for it (libc's strdup, say). The reports print it with the
 * object the loader mapped it from and the offset of the call instruction
 * in that file, "0x55d0c21a31a8 (/path/prog+0x11a7)": `addr2line -e
 * /path/prog 0x11a7` names the source line (the program built with -g).
 *
 * Mistakes. With a debugging mode on, the heap checks a block's red zones
 * and poison when the block is freed or handed out again (kmm/heap.h): what
 * it finds it logs (the hosted port hands the line to pm_log_hook), and the
 * call completes. The process is then ended, as a rejected call (a double
 * free, a foreign pointer) ends it: the heap's line, the call that found it
 * with its caller, each caller the line names resolved as above, the heap's
 * recent events if events is on, and SIGABRT, as glibc does on the heap
 * corruption it detects ("free(): invalid pointer"). Carrying on would hand
 * out memory a stray write has reached, and the first report is the one
 * that points at the bug.
 *
 * Exit. The reports run after the program's atexit handlers and C++
 * destructors as far as can be: at the later of an atexit handler
 * registered at the first call and this library's ELF destructor (run by
 * the loader's _dl_fini). Which is later depends on when the first call
 * came: before __libc_start_main registered _dl_fini (a constructor of a
 * library allocated) the atexit handler runs after every destructor; else
 * the destructor runs after every atexit handler. Running at the second of
 * the two counts both. The heap is never torn down: frees after the reports
 * (libc's own, a later library's destructors) still work.
 */
#define _GNU_SOURCE
#include "pm.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kmm/check.h>
#include <kmm/page.h>

bool pm_debugging;

/* Every Nth allocation on a guard page, for "guard" without ":N". */
#define PM_GUARD_EVERY_DEFAULT 100u
/* Call sites listed in the leak report; the rest summed (as the heap's). */
#define PM_LEAK_SITES          64u
/* Recent heap events printed when a mistake ends the process. */
#define PM_EVENTS_SHOWN        16u
/* A descriptor number out of the way of programs that expect theirs low. */
#define EXIT_FD_MIN            100

/* What KMM_MALLOC_REPORT asks for. */
enum { REPORT_STATS = 1, REPORT_LEAKS = 2 };

static unsigned debug_modes;  /* KMM_HEAP_DEBUG_* */
static unsigned guard_every;  /* 0: no guard pages */
static unsigned report;       /* REPORT_* */
static int report_fd = -1;    /* where the report goes; -1: not asked for */
static int stats_fd = -1;     /* KMM_MALLOC_STATS' */
static int check_fd = -1;     /* KMM_MALLOC_CHECK's */
static atomic_int exit_hooks; /* how many of the two exit hooks ran */
static char exe_path[4096];   /* the program, for call sites in it */

/* --- writing without malloc ------------------------------------------------------------- */

static void write_all(int fd, const char *text, size_t len)
{
    while (len && fd >= 0) {
        ssize_t n = write(fd, text, len);
        if (n <= 0 && errno != EINTR)
            return;
        if (n > 0) {
            text += n;
            len -= (size_t)n;
        }
    }
}

static void sink_fd(void *ctx, const char *text, size_t len)
{
    write_all(*(const int *)ctx, text, len);
}

/* One line (cut at 1 KiB) to fd; glibc's snprintf needs no memory for
 * these conversions. Keeps errno. */
void pm_say(int fd, const char *fmt, ...)
{
    char line[1024];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        write_all(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    errno = saved;
}

/* --- call sites ------------------------------------------------------------------------- */

/*
 * Writes return address ret as "0x... (object+0xoff)" into buf: the object
 * the loader mapped it from and the offset of the call instruction (ret - 1)
 * in that file, which addr2line takes; "0x..." alone if no object holds
 * it. dladdr1 takes the loader's lock: never while quiesced or entered (a
 * thread in dlopen may be waiting for the heap).
 */
static void describe(const void *ret, char *buf, size_t size)
{
    Dl_info info;
    struct link_map *map = NULL;
    if (!ret || !dladdr1(ret, &info, (void **)&map, RTLD_DL_LINKMAP) || !map) {
        snprintf(buf, size, "%p", ret);
        return;
    }
    const char *name = info.dli_fname && *info.dli_fname ? info.dli_fname : exe_path;
    if (map->l_name && !*map->l_name) /* the main program: the loader keeps no path */
        name = exe_path;
    snprintf(buf, size, "%p (%s+0x%" PRIxPTR ")", ret, name,
             (uintptr_t)ret - 1 - (uintptr_t)map->l_addr);
}

/* --- switches ---------------------------------------------------------------------------- */

static void bad_switch(const char *name, const char *value, const char *why)
{
    pm_say(STDERR_FILENO, "kmm-malloc: %s=%s: %s; ignored\n", name, value, why);
}

/* "N" from 1 to UINT32_MAX in s[0 .. len): true and *out if it is one. */
static bool parse_count(const char *s, size_t len, unsigned *out)
{
    uint64_t n = 0;
    if (len == 0 || len > 10)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    if (n == 0 || n > UINT32_MAX)
        return false;
    *out = (unsigned)n;
    return true;
}

static const struct {
    const char *name;
    unsigned flags;
} modes[] = {
    {"redzone", KMM_HEAP_DEBUG_REDZONE},       {"poison", KMM_HEAP_DEBUG_POISON},
    {"quarantine", KMM_HEAP_DEBUG_QUARANTINE}, {"track", KMM_HEAP_DEBUG_TRACK},
    {"events", KMM_HEAP_DEBUG_EVENTS},         {"all", KMM_HEAP_DEBUG_ALL},
};

/* One word of KMM_MALLOC_DEBUG (s[0 .. len)): false if it is none. */
static bool parse_mode(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strlen(modes[i].name) == len && memcmp(s, modes[i].name, len) == 0) {
            debug_modes |= modes[i].flags;
            return true;
        }
    }
    static const char guard[] = "guard";
    size_t g = sizeof(guard) - 1;
    if (len < g || memcmp(s, guard, g) != 0)
        return false;
    if (len == g) {
        guard_every = PM_GUARD_EVERY_DEFAULT;
        return true;
    }
    return s[g] == ':' && parse_count(s + g + 1, len - g - 1, &guard_every);
}

static void parse_debug(void)
{
    const char *v = getenv("KMM_MALLOC_DEBUG");
    if (!v || !*v)
        return;
    for (const char *s = v; *s;) {
        size_t len = strcspn(s, ",");
        if (len && !parse_mode(s, len)) {
            char why[160];
            snprintf(why, sizeof(why),
                     "'%.*s' is no mode (redzone, poison, quarantine, track, events, all, "
                     "guard[:N]); that word",
                     (int)(len > 40 ? 40 : len), s);
            bad_switch("KMM_MALLOC_DEBUG", v, why);
        }
        s += len;
        if (*s == ',')
            s++;
    }
}

static void parse_report(void)
{
    const char *v = getenv("KMM_MALLOC_REPORT");
    if (!v || !*v)
        return;
    if (strcmp(v, "stats") == 0)
        report = REPORT_STATS;
    else if (strcmp(v, "leaks") == 0)
        report = REPORT_LEAKS;
    else if (strcmp(v, "all") == 0)
        report = REPORT_STATS | REPORT_LEAKS;
    else
        bad_switch("KMM_MALLOC_REPORT", v, "not stats, leaks or all");
    if (report & REPORT_LEAKS)
        debug_modes |= KMM_HEAP_DEBUG_TRACK;
}

/* fd moved out of the programs' way (close-on-exec); -1 if fd is. */
static int moved_fd(int fd)
{
    int moved = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, EXIT_FD_MIN);
    if (fd >= 0)
        close(fd);
    return moved;
}

/* Where the output of a wish named name goes: stderr as it is now, or the
 * file the variable names; -1 if it is not set, empty or "0". */
static int exit_fd(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v || strcmp(v, "0") == 0)
        return -1;
    return moved_fd(v[0] == '/' ? open(v, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)
                                : dup(STDERR_FILENO));
}

static int report_file(void)
{
    const char *v = getenv("KMM_MALLOC_REPORT_FILE");
    if (!v || !*v)
        return moved_fd(dup(STDERR_FILENO));
    int fd = moved_fd(open(v, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    if (fd < 0) {
        bad_switch("KMM_MALLOC_REPORT_FILE", v, strerror(errno));
        return moved_fd(dup(STDERR_FILENO));
    }
    return fd;
}

void pm_debug_read_switches(void)
{
    parse_debug();
    parse_report();
    pm_debugging = debug_modes || guard_every;
    stats_fd = exit_fd("KMM_MALLOC_STATS");
    check_fd = exit_fd("KMM_MALLOC_CHECK");
    if (report)
        report_fd = report_file();
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
    exe_path[n > 0 ? n : 0] = '\0';
}

void pm_debug_start(void)
{
    if (debug_modes) {
        int err = kmm_heap_debug(pm_k, debug_modes);
        if (err < 0)
            pm_say(STDERR_FILENO, "kmm-malloc: KMM_MALLOC_DEBUG: the heap refused: %s; ignored\n",
                   kmm_strerror(err));
    }
    if (guard_every) {
        int err = kmm_heap_guard_sample(pm_k, guard_every);
        if (err != KMM_OK)
            pm_say(STDERR_FILENO, "kmm-malloc: KMM_MALLOC_DEBUG: guard:%u: %s; ignored\n",
                   guard_every, kmm_strerror(err));
    }
}

bool pm_exit_wanted(void)
{
    return report_fd >= 0 || stats_fd >= 0 || check_fd >= 0;
}

/* --- what the heap finds -------------------------------------------------------------------- */

void pm_log_hook(void *ctx, int level, const char *line)
{
    (void)ctx;
    if (level != KMM_LOG_ERR)
        return;
    snprintf(pm_self.found_line, sizeof(pm_self.found_line), "%s", line);
    pm_self.found = true;
}

/* Each "by 0x..." of the heap's line, resolved. */
static void describe_named_callers(const char *line)
{
    static const char by[] = " by 0x";
    for (const char *s = strstr(line, by); s; s = strstr(s + 1, by)) {
        const void *addr = (const void *)(uintptr_t)strtoull(s + sizeof(by) - 3, NULL, 16);
        char where[PM_LINE];
        describe(addr, where, sizeof(where));
        /* The words before " by": "allocated", "freed", "freed before". */
        const char *w = s;
        while (w > line && w[-1] != ';' && w[-1] != ',' && w[-1] != '(')
            w--;
        while (*w == ' ')
            w++;
        pm_say(STDERR_FILENO, "kmm-malloc:   %.*s by %s\n", (int)(s - w), w, where);
    }
}

/* The heap's last events, oldest first. */
static void print_events(void)
{
    struct kmm_heap_event ev[PM_EVENTS_SHOWN];
    size_t n = kmm_heap_events(pm_k, ev, PM_EVENTS_SHOWN);
    if (!n)
        return;
    static const char *const ops[] = {"?", "alloc", "free", "BAD"};
    pm_say(STDERR_FILENO, "kmm-malloc: the heap's last %zu events:\n", n);
    for (size_t i = 0; i < n; i++) {
        char where[PM_LINE];
        describe(ev[i].caller, where, sizeof(where));
        pm_say(STDERR_FILENO,
               "kmm-malloc:   #%" PRIu64 " %-5s 0x%" PRIx64 " size %" PRIu64 " cpu %u from %s\n",
               ev[i].seq, ops[ev[i].op < 4 ? ev[i].op : 0], ev[i].addr, ev[i].size, ev[i].cpu,
               where);
    }
}

/* The report of a mistake the heap caught in call(p) from caller. */
static void tell(const char *call, const void *p, const void *caller, const char *what)
{
    char where[PM_LINE];
    describe(caller, where, sizeof(where));
    pm_say(STDERR_FILENO, "kmm-malloc: %s(%p) called from %s: %s\n", call, p, where, what);
    if (pm_self.found) {
        pm_say(STDERR_FILENO, "kmm-malloc: the heap: %s\n", pm_self.found_line);
        describe_named_callers(pm_self.found_line);
    }
    if (debug_modes & KMM_HEAP_DEBUG_EVENTS)
        print_events();
}

noreturn void pm_reject(const char *call, const void *p, int err, const void *caller)
{
    tell(call, p, caller, kmm_strerror(err));
    abort();
}

void pm_found_slow(const char *call, const void *p, const void *caller)
{
    tell(call, p, caller, "the heap found memory damaged (a write out of bounds or after free)");
    abort();
}

/* --- exit ------------------------------------------------------------------------------------ */

/* Every CPU's caches back to the slabs and zones, so that the figures count
 * cached objects as free where they are: only while quiesced. */
static void drain_every_cpu(void)
{
    for (unsigned cpu = 0; cpu < pm_cpus; cpu++) {
        kmm_heap_drain_offline_cpu(pm_k, cpu);
        kmm_page_drain_offline_cpu(pm_k, cpu);
    }
}

static void print_stats(int fd)
{
    struct kmm_heap_stats st;
    kmm_heap_stats(pm_k, &st);
    pm_say(fd,
           "kmm-malloc: heap at exit: %" PRIu64 " blocks live (%" PRIu64 " bytes used, %" PRIu64
           " large blocks of %" PRIu64 " bytes), %" PRIu64 " bytes held, peak %" PRIu64 "\n",
           st.allocs - st.frees, st.bytes_used, st.large_blocks, st.large_bytes, st.bytes_held,
           st.bytes_peak);
    pm_say(fd,
           "kmm-malloc: %" PRIu64 " allocations (%" PRIu64 " bytes), %" PRIu64 " frees (%" PRIu64
           " bytes), %" PRIu64 " failed, %" PRIu64 " rejected calls\n",
           st.allocs, st.alloc_bytes, st.frees, st.free_bytes, st.failed, st.misuse);
    kmm_report(pm_k, &(struct kmm_sink){sink_fd, &fd});
}

/* The leak report's figures, taken while quiesced and printed after
 * (resolving the callers takes the loader's lock: not while quiesced). */
static struct {
    struct kmm_heap_site site[PM_LEAK_SITES + 1];
    size_t sites; /* kmm_heap_leak_sites' count (site[] holds at most its bound) */
    struct kmm_heap_stats st;
} leaks;

static void take_leaks(void)
{
    leaks.sites = kmm_heap_leak_sites(pm_k, 0, leaks.site, PM_LEAK_SITES + 1);
    kmm_heap_stats(pm_k, &leaks.st);
}

static void print_leaks(void)
{
    uint64_t objects = 0, bytes = 0;
    for (size_t i = 0; i < leaks.sites && i <= PM_LEAK_SITES; i++) {
        objects += leaks.site[i].objects;
        bytes += leaks.site[i].bytes;
    }
    pm_say(report_fd,
           "kmm-malloc: leaks: %" PRIu64 " blocks, %" PRIu64 " bytes still live from %zu call "
           "sites (blocks up to %zu bytes); %" PRIu64 " larger blocks, %" PRIu64
           " bytes, not tracked\n",
           objects, bytes, leaks.sites, KMM_HEAP_SLAB_MAX, leaks.st.large_blocks,
           leaks.st.large_bytes);
    for (size_t i = 0; i < leaks.sites && i <= PM_LEAK_SITES; i++) {
        const struct kmm_heap_site *s = &leaks.site[i];
        char where[PM_LINE];
        if (s->caller)
            describe(s->caller, where, sizeof(where));
        else
            snprintf(where, sizeof(where), "other call sites");
        pm_say(report_fd, "kmm-malloc: leak: %" PRIu64 " blocks, %" PRIu64 " bytes, from %s\n",
               s->objects, s->bytes, where);
    }
}

/* The reports and the check the environment asked for. Other threads may
 * still run: they wait at the gate meanwhile. */
static void exit_reports(void)
{
    pm_quiesce();
    drain_every_cpu();
    if (stats_fd >= 0)
        print_stats(stats_fd);
    if (report)
        pm_say(report_fd, "kmm-malloc: report at exit of process %ld (%s)\n", (long)getpid(),
               exe_path);
    if (report & REPORT_STATS)
        print_stats(report_fd);
    if (report & REPORT_LEAKS)
        take_leaks();
    struct kmm_check_result r = {0};
    int status = check_fd >= 0 ? kmm_check(pm_k, &r) : KMM_CHECK_OK;
    pm_unquiesce();
    if (report & REPORT_LEAKS)
        print_leaks();
    if (check_fd < 0)
        return;
    if (status == KMM_CHECK_OK) {
        pm_say(check_fd,
               "kmm-malloc: kmm_check: ok (%" PRIu64 " frames, %" PRIu64 " free blocks)\n",
               r.frames_walked, r.blocks_walked);
        return;
    }
    pm_say(check_fd, "kmm-malloc: kmm_check: %s, %lu problems; first: %s\n",
           status == KMM_CHECK_LEAK ? "leak" : "corrupt", r.problems, r.first);
    abort();
}

/* Both exit hooks: the second to run reports. */
void pm_exit_hook(void)
{
    if (atomic_fetch_add(&exit_hooks, 1) == 1)
        exit_reports();
}

__attribute__((destructor)) static void pm_destructor(void)
{
    if (pm_instance_ready() && pm_exit_wanted())
        pm_exit_hook();
}
