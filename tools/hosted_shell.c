/*
 * hosted_shell.c - build/hosted/kmm-shell: the demo kernel's shell
 * (kernel/shell/) over a simulated machine, driven through stdin/stdout.
 *
 * The machine is the hosted demo's: a QEMU q35 PC with RAM below and above
 * 4 GiB, here 2 GiB as the Linux anchor's `-m 2G` (KMM_SHELL_RAM_MIB
 * changes it), with the kernel virtual area window inside the port's mirror
 * window, so what the library maps is usable at its address as in the
 * kernel. The Boruix interface (compat/) adopts the instance, so the Boruix
 * commands (memtest ... memprottest) run here too: the mirror window plays
 * Boruix's heap window, its first 32 MiB left to their fixed mappings and
 * the kernel virtual areas past them, as in the kernel. Runs the shell until
 * end of input or `halt`; exits 0 if the last command succeeded.
 *
 *     printf 'meminfo\ncheck\n' | build/hosted/kmm-shell
 *     build/hosted/kmm-shell            # interactive (line editing needs a raw
 *                                       # terminal: stty raw -echo; ...; stty sane)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <kmm/kmm.h>
#include <kmm/page.h>

#include "boruix_cmds.h"
#include "hosted.h"
#include "shell.h"
#include "world.h"

#define MIB             (UINT64_C(1) << 20)
#define RAM_MIB_DEFAULT 2048u
#define MIRROR_BYTES    (UINT64_C(1) << 30) /* the kernel virtual area window */
#define HOSTED_CPUS     2u

static int read_stdin(void *ctx)
{
    (void)ctx;
    int c = getchar();
    return c == EOF ? KSHELL_EOF : c;
}

static void write_stdout(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
}

static uint64_t now_ns(void *host)
{
    (void)host;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void leave(void *host)
{
    (void)host; /* the shell stops and main tears the machine down */
}

int main(void)
{
    unsigned ram_mib = RAM_MIB_DEFAULT;
    const char *env = getenv("KMM_SHELL_RAM_MIB");
    if (env) {
        char *end;
        unsigned long v = strtoul(env, &end, 10);
        if (*end || v < 64 || v > 65536) {
            fprintf(stderr, "kmm-shell: KMM_SHELL_RAM_MIB must be 64 .. 65536\n");
            return EXIT_FAILURE;
        }
        ram_mib = (unsigned)v;
    }
    /* A PC: the first 640 KiB, then RAM from 1 MiB, as SeaBIOS reports it. */
    struct kmm_region map[] = {
        {0x1000, 0x9e000, KMM_MEM_USABLE},
        {MIB, (uint64_t)ram_mib * MIB - MIB, KMM_MEM_USABLE},
    };
    struct hosted_machine *m = hosted_machine_from_map(map, 2, MIRROR_BYTES);
    if (!m) {
        perror("kmm-shell: cannot create the simulated machine");
        return EXIT_FAILURE;
    }
    uint64_t wbase, wsize;
    hosted_machine_mirror_window(m, &wbase, &wsize);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m),
        .regions = map,
        .region_count = 2,
        .cpu_count = HOSTED_CPUS,
        .kva_base = wbase + KMM_BORUIX_FIXED_PART,
        .kva_size = wsize - KMM_BORUIX_FIXED_PART,
    };
    struct kmm *k;
    int err = kmm_init(&cfg, &k);
    if (err) {
        fprintf(stderr, "kmm-shell: kmm_init failed: %s\n", kmm_strerror(err));
        hosted_machine_destroy(m);
        return EXIT_FAILURE;
    }
    struct kmm_boruix_world bw = {.heap_base = wbase, .heap_size = wsize};
    err = kmm_boruix_adopt(k, &bw);
    if (err) {
        fprintf(stderr, "kmm-shell: kmm_boruix_adopt failed: %s\n", kmm_strerror(err));
        kmm_fini(k);
        hosted_machine_destroy(m);
        return EXIT_FAILURE;
    }
    size_t boruix_count;
    const struct kshell_cmd *boruix = kshell_boruix_commands(&boruix_count);
    printf("kmm shell (hosted): a simulated PC with %u MiB of RAM, %u CPUs; "
           "help lists the commands\n",
           ram_mib, HOSTED_CPUS);
    static struct kshell sh;
    struct kshell_config sc = {
        .k = k,
        .io = {read_stdin, write_stdout, NULL},
        .now_ns = now_ns,
        .live_mappings = true,
        .halt = leave,
        .reboot = leave,
        .extra = boruix,
        .extra_count = boruix_count,
    };
    kshell_init(&sh, &sc);
    int status = kshell_run(&sh);
    fflush(stdout);
    kmm_boruix_fini(); /* lets the instance go; kmm_fini ends it */
    kmm_fini(k);
    hosted_machine_destroy(m);
    return status ? EXIT_FAILURE : EXIT_SUCCESS;
}
