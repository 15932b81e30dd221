/*
 * shell.h - the demo kernel's debug shell: a line editor and a table of
 * commands that look inside a kmm instance (SPEC §7, issue 12).
 *
 * Freestanding and host-agnostic: it runs over any struct kmm and a tiny
 * terminal (read a byte, write bytes), so the same code runs in the kernel
 * over COM1 and hosted over stdin/stdout (build/hosted/kmm-shell,
 * tools/hosted_shell.c). The host supplies everything the shell cannot do
 * itself as callbacks: a clock for `bench`, the kernel's test suite for
 * `selftest`, leaving the machine for `reboot` and `halt`.
 *
 * How a host starts it (the kernel's seam: kmain, after the takeover):
 *
 *     static struct kshell sh;             // ~3 KiB: keep it off small stacks
 *     struct kshell_config cfg = {.k = k, .io = {serial_getc, serial_write, NULL},
 *                                 .now_ns = tsc_ns, .selftest = run_ktests, ...};
 *     kshell_init(&sh, &cfg);
 *     kshell_run(&sh);                     // returns at end of input or `halt`
 *
 * Terminal: the shell writes '\n' line ends and, while editing, "\r",
 * backspaces and the ANSI sequences ESC[K (clear to end of line) and ESC[nD
 * (cursor left); a serial host turns '\n' into CR LF. Input: printable
 * ASCII, CR or LF (CR LF counts once) ends a line, Backspace (0x08 or
 * 0x7f), Ctrl-A / Ctrl-E (start / end), Ctrl-U (erase the line), Ctrl-C
 * (abandon the line), Tab (complete a command name), ESC[A / ESC[B (history
 * up / down), ESC[C / ESC[D (right / left). Other bytes are ignored; a line
 * longer than KSHELL_LINE_MAX is refused with a message when entered.
 */
#ifndef KMM_KSHELL_H
#define KMM_KSHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>

#define KSHELL_LINE_MAX 120u /* bytes of a command line, without its end */
#define KSHELL_HISTORY  8u   /* lines the history ring keeps */
#define KSHELL_ARGS_MAX 8u   /* words of a command line */
#define KSHELL_EOF      (-1) /* kshell_io.read: no more input */

/* The terminal. */
struct kshell_io {
    int (*read)(void *ctx); /* the next byte (0..255), or KSHELL_EOF; may block */
    void (*write)(void *ctx, const char *text, size_t len);
    void *ctx;
};

struct kshell;

/* A command: its name, its arguments' synopsis, one line of help, and the
 * function, which gets the words of the line (argv[0] is the name) and
 * returns 0 when it did what was asked, nonzero otherwise. */
struct kshell_cmd {
    const char *name;
    const char *args; /* "" when it takes none */
    const char *help;
    int (*run)(struct kshell *sh, unsigned argc, char **argv);
};

/* What the host provides. Only k and io are required. */
struct kshell_config {
    struct kmm *k;
    struct kshell_io io;
    const char *prompt; /* NULL: "kmm> " */
    void *host;         /* the callbacks' context */
    /* A nanosecond clock (`bench`, `stress`'s elapsed time); NULL: `bench`
     * says it has no clock. */
    uint64_t (*now_ns)(void *host);
    unsigned long tsc_khz; /* for bench's START line; 0: unknown */
    /* What the kernel maps in its space is usable at its address (the real
     * kernel and the hosted shell: yes; a test machine in the kernel: no). */
    bool live_mappings;
    /* `selftest [filter]`: run the test suite, its output through the
     * shell's terminal; returns the number of failed tests. NULL: refused. */
    int (*selftest)(void *host, const char *filter, const struct kmm_sink *out);
    /* `reboot` and `halt`: NULL means the command only stops the shell
     * (kshell_run returns); a host's function need not return. */
    void (*reboot)(void *host);
    void (*halt)(void *host);
    /* More commands (issue 13's Boruix commands, a host's own), listed by
     * `help` after the built-in ones and completed by Tab. */
    const struct kshell_cmd *extra;
    size_t extra_count;
};

/* The shell's state; all of it lives here (no globals). */
struct kshell {
    struct kshell_config cfg;
    char line[KSHELL_LINE_MAX + 1];
    unsigned len, cursor; /* bytes in line, and where the cursor is */
    bool overlong;        /* bytes were dropped: the line is refused when entered */
    unsigned esc;         /* escape-sequence state: 0 none, 1 after ESC, 2 after ESC [ */
    bool last_cr;         /* the previous byte was CR (a following LF is the same end) */
    char history[KSHELL_HISTORY][KSHELL_LINE_MAX + 1];
    unsigned hist_count;             /* lines stored, at most KSHELL_HISTORY */
    unsigned hist_next;              /* the slot the next line goes to */
    unsigned hist_back;              /* how far back the editor is (0: the line being typed) */
    char saved[KSHELL_LINE_MAX + 1]; /* the line being typed, while browsing history */
    bool stop;                       /* kshell_run returns after this line */
    uint64_t leak_mark;              /* the generation `leaks mark` took (0: none) */
    uint64_t stress_seed;            /* the next `stress` run's seed */
    int last_status;                 /* the last command's result (0: ok) */
};

/* kshell_init - set sh up with cfg (copied). Writes nothing. O(1). */
void kshell_init(struct kshell *sh, const struct kshell_config *cfg);

/* kshell_prompt - write the prompt (kshell_run does it; a host feeding
 * bytes itself calls it once first). */
void kshell_prompt(struct kshell *sh);

/* kshell_feed - hand one input byte to the line editor; at a line end the
 * command runs and the next prompt is written. Returns false once the shell
 * has stopped (`halt`, `reboot` without a host callback). */
bool kshell_feed(struct kshell *sh, int byte);

/* kshell_run - prompt, then feed bytes from io.read until it returns
 * KSHELL_EOF or the shell stops. Returns the last command's status. */
int kshell_run(struct kshell *sh);

/* kshell_exec - run one command line (no editing, no history). Returns 0
 * when the command succeeded, nonzero when it failed or was refused (an
 * unknown command, bad arguments: a message says why). */
int kshell_exec(struct kshell *sh, const char *line);

/* kshell_printf - formatted output to the shell's terminal (kmm/fmt.h's
 * conversions; a line of at most 255 bytes per call). */
void kshell_printf(struct kshell *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The built-in commands, for hosts and tests that list them. */
const struct kshell_cmd *kshell_builtin(size_t *count);

#endif /* KMM_KSHELL_H */
