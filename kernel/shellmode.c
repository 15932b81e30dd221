/*
 * shellmode.c - the shell and bench boot modes (contract: shellmode.h).
 *
 * The shell's terminal is COM1, polled (no IRQs: the kernel has none
 * enabled), its output mirrored to the VGA screen as all console output is.
 * Time is the TSC, its frequency measured once against the PIT.
 */
#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/port.h>

#include "boot.h"
#include "bootinfo.h"
#include "boruix_cmds.h"
#include "boruix_world.h"
#include "console.h"
#include "kernel.h"
#include "mmbench.h"
#include "selftest.h"
#include "shell.h"
#include "shell_util.h"
#include "shellmode.h"
#include "user_cmd.h"

/* The PIT's channel 2, gated through port 0x61, counts down from
 * PIT_CAL_TICKS at PIT_HZ; its OUT pin rises when it reaches 0. */
#define SHELL_EXTRA_MAX  8u /* the shell's commands beyond the built-in ones */
#define PIT_HZ           1193182u
#define PIT_CAL_TICKS    11932u /* ~10 ms */
#define CAL_TRIES        5u     /* countdowns measured; the shortest counts */
#define PIT_CMD          0x43
#define PIT_CH2          0x42
#define PIT_CH2_MODE0    0xB0 /* channel 2, lobyte/hibyte, mode 0, binary */
#define PORT_B           0x61
#define PORT_B_GATE2     0x01
#define PORT_B_SPEAKER   0x02
#define PORT_B_OUT2      0x20
#define MS_PER_S         1000u
#define NS_PER_MS        UINT64_C(1000000)
/* The keyboard controller's reset line (port 0x64, command 0xFE). */
#define KBC_STATUS       0x64
#define KBC_STATUS_INBUF 0x02
#define KBC_RESET        0xFE
#define KBC_WAIT_SPINS   100000u

static unsigned long tsc_khz;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

/* The TSC cycles over one PIT_CAL_TICKS countdown of the PIT (~10 ms). */
static uint64_t tsc_cycles_per_countdown(void)
{
    uint8_t b = inb(PORT_B);
    outb(PORT_B, (uint8_t)((b & ~PORT_B_SPEAKER) | PORT_B_GATE2));
    outb(PIT_CMD, PIT_CH2_MODE0);
    outb(PIT_CH2, (uint8_t)(PIT_CAL_TICKS & 0xFF));
    outb(PIT_CH2, (uint8_t)(PIT_CAL_TICKS >> 8));
    uint64_t t0 = rdtsc();
    while (!(inb(PORT_B) & PORT_B_OUT2))
        __asm__ volatile("pause");
    uint64_t cycles = rdtsc() - t0;
    outb(PORT_B, b);
    return cycles;
}

/* The TSC's frequency in kHz: the shortest of CAL_TRIES countdowns, since a
 * delay (an emulator's thread descheduled on a busy host) only ever makes
 * one longer: a single try measured 3.6 GHz on a 2.6 GHz host. */
static unsigned long tsc_calibrate(void)
{
    uint64_t best = UINT64_MAX;
    for (unsigned i = 0; i < CAL_TRIES; i++) {
        uint64_t c = tsc_cycles_per_countdown();
        if (c < best)
            best = c;
    }
    /* kHz = cycles / seconds / 1000, seconds = PIT_CAL_TICKS / PIT_HZ. */
    return (unsigned long)(best * PIT_HZ / PIT_CAL_TICKS / MS_PER_S);
}

/* Nanoseconds since boot, from the TSC (mmbench's and the shell's clock). */
static uint64_t tsc_ns(void *host)
{
    (void)host;
    uint64_t t = rdtsc();
    /* Split so that t * 1e6 cannot overflow: whole milliseconds, then the rest. */
    uint64_t ms = t / tsc_khz;
    uint64_t rest = t % tsc_khz;
    return ms * NS_PER_MS + rest * NS_PER_MS / tsc_khz;
}

/* The port's clock (kmm_port_impl.h): rust_memory_benchmark's. */
uint64_t kmm_port_clock_ns(void)
{
    return tsc_khz ? tsc_ns(NULL) : 0;
}

static void clock_init(void)
{
    tsc_khz = tsc_calibrate();
    if (!tsc_khz) /* a broken PIT: say so and guess 1 GHz rather than divide by 0 */
        tsc_khz = NS_PER_MS;
    kprintf("# kmm kernel: TSC %lu kHz (against the PIT)\n", tsc_khz);
}

/* --- the terminal -------------------------------------------------------------------- */

/* The next byte from COM1, waiting for it. */
static int serial_read(void *ctx)
{
    (void)ctx;
    uint8_t c;
    while (!console_poll(&c))
        __asm__ volatile("pause");
    return c;
}

/* The shell's text to the console (kmain turned CR LF line ends on). */
static void serial_write(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    console_write(text, len);
}

/* --- the host's callbacks -------------------------------------------------------------- */

static int run_selftest(void *host, const char *filter, const struct kmm_sink *out)
{
    (void)host;
    return selftest_run(filter, out);
}

/* Through the keyboard controller's reset line, then a triple fault (an
 * empty IDT) if the machine is still here. */
static void reboot(void *host)
{
    (void)host;
    __asm__ volatile("cli");
    for (unsigned i = 0; i < KBC_WAIT_SPINS && (inb(KBC_STATUS) & KBC_STATUS_INBUF); i++)
        __asm__ volatile("pause");
    outb(KBC_STATUS, KBC_RESET);
    static const struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) no_idt = {0, 0};
    __asm__ volatile("lidt %0; int3" : : "m"(no_idt));
    kernel_panic("reboot: the machine did not reset");
}

/* isa-debug-exit with the success code under QEMU; elsewhere hlt forever. */
static void halt(void *host)
{
    (void)host;
    kernel_exit(KERNEL_EXIT_PASS);
}

noreturn void shell_main(void)
{
    clock_init();
    /* The Boruix interface over the kernel's own instance, for the shell's
     * Boruix commands (boruix_world.c). */
    int err = kernel_boruix_adopt();
    if (err)
        kprintf("# kmm kernel: the Boruix interface is not available: %s\n", kmm_strerror(err));
    size_t boruix_count = 0;
    const struct kshell_cmd *boruix = err ? NULL : kshell_boruix_commands(&boruix_count);
    /* The kernel's own commands after Boruix's: `user` (ring 3). */
    static struct kshell_cmd extra[SHELL_EXTRA_MAX];
    size_t extra_count = 0;
    for (size_t i = 0; i < boruix_count && extra_count < SHELL_EXTRA_MAX - 1; i++)
        extra[extra_count++] = boruix[i];
    extra[extra_count++] = *kshell_user_command();
    static struct kshell sh; /* ~3 KiB: off the boot stack */
    struct kshell_config cfg = {
        .k = kernel_kmm,
        .io = {serial_read, serial_write, NULL},
        .now_ns = tsc_ns,
        .tsc_khz = tsc_khz,
        .live_mappings = true,
        .selftest = run_selftest,
        .reboot = reboot,
        .halt = halt,
        .extra = extra,
        .extra_count = extra_count,
    };
    kshell_init(&sh, &cfg);
    kprintf("kmm shell: the kernel's own instance; help lists the commands\n");
    for (;;) {
        kshell_run(&sh);
        /* The input never ends and halt and reboot do not return: a stop
         * here is a host callback missing; start over rather than leave. */
        kshell_init(&sh, &cfg);
    }
}

/* The number of the command line's key=value (decimal, or hex after 0x),
 * or dflt when the key is absent or its value is not a number. */
static unsigned boot_number(const char *key, unsigned dflt)
{
    char text[24];
    uint64_t v;
    if (!bootinfo_option(&kernel_boot, key, text, sizeof(text)) || !parse_u64(text, &v) ||
        v > UINT32_MAX)
        return dflt;
    return (unsigned)v;
}

noreturn void bench_main(void)
{
    clock_init();
    /* The Linux module's parameter names pick workloads and sizes (make
     * bench-kernel BENCH_ARGS='mmbench.tests=0x1c0 mmbench.reps=1'). */
    struct mmbench_config cfg = {
        .k = kernel_kmm,
        .now_ns = tsc_ns,
        .out = {console_sink_write, NULL},
        .live_mappings = true,
        .tsc_khz = tsc_khz,
        .reps = boot_number("mmbench.reps", 0),
        .tests = boot_number("mmbench.tests", 0),
        .scale_div = boot_number("mmbench.scale_div", 0),
    };
    struct mmbench_summary sum = {0};
    int err = mmbench_run(&cfg, &sum);
    struct kmm_check_result cr;
    int check = kmm_check(kernel_kmm, &cr);
    kprintf("# kmm kernel: bench %s: %u results, %u skipped, %llu failures, kmm_check %s\n",
            err ? kmm_strerror(err) : "done", sum.results, sum.skipped,
            (unsigned long long)sum.fails, check ? kmm_strerror(check) : "ok");
    bool ok = !err && !sum.skipped && !sum.fails && !check;
    kernel_exit(ok ? KERNEL_EXIT_PASS : KERNEL_EXIT_FAIL);
}
