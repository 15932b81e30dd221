/*
 * shell.c - the shell's line editor and command dispatch (shell.h). The
 * commands themselves are in commands.c.
 *
 * The editor keeps one line and a cursor; every key either changes the line
 * and echoes the change in place (typing at the end, a backspace at the
 * end), or redraws the whole line: "\r", the prompt, the line, ESC[K, then
 * the cursor moved back where it belongs. Nothing here allocates.
 */
#include "shell.h"
#include "shell_util.h"

#include <stdarg.h>

#include <kmm/fmt.h>

#define KEY_CTRL_A    0x01
#define KEY_CTRL_C    0x03
#define KEY_CTRL_E    0x05
#define KEY_BACKSPACE 0x08
#define KEY_TAB       0x09
#define KEY_LF        0x0a
#define KEY_CR        0x0d
#define KEY_CTRL_U    0x15
#define KEY_ESC       0x1b
#define KEY_DEL       0x7f

/* Escape-sequence states (struct kshell.esc). */
#define ESC_NONE 0u
#define ESC_SEEN 1u /* after ESC */
#define ESC_CSI  2u /* after ESC [ : parameters until a final byte */

#define DEFAULT_PROMPT "kmm> "
#define PRINTF_MAX     256u

static void out(struct kshell *sh, const char *text, size_t len)
{
    if (len)
        sh->cfg.io.write(sh->cfg.io.ctx, text, len);
}

static void out_str(struct kshell *sh, const char *s)
{
    out(sh, s, str_len(s));
}

void kshell_printf(struct kshell *sh, const char *fmt, ...)
{
    char buf[PRINTF_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    out(sh, buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
}

void kshell_init(struct kshell *sh, const struct kshell_config *cfg)
{
    *sh = (struct kshell){.cfg = *cfg, .stress_seed = 1};
    if (!sh->cfg.prompt)
        sh->cfg.prompt = DEFAULT_PROMPT;
}

void kshell_prompt(struct kshell *sh)
{
    out_str(sh, sh->cfg.prompt);
}

/* --- the editor ------------------------------------------------------------------------ */

/* Writes the prompt and the line again and puts the cursor in place. */
static void redraw(struct kshell *sh)
{
    out_str(sh, "\r");
    out_str(sh, sh->cfg.prompt);
    out(sh, sh->line, sh->len);
    out_str(sh, "\x1b[K");
    if (sh->cursor < sh->len)
        kshell_printf(sh, "\x1b[%uD", sh->len - sh->cursor);
}

/* Replaces the line with text, cursor at its end. */
static void set_line(struct kshell *sh, const char *text)
{
    str_copy(sh->line, text, sizeof(sh->line));
    sh->len = (unsigned)str_len(sh->line);
    sh->cursor = sh->len;
    sh->overlong = false;
    redraw(sh);
}

static void insert_byte(struct kshell *sh, char c)
{
    if (sh->len >= KSHELL_LINE_MAX) {
        sh->overlong = true; /* refused with a message when entered */
        return;
    }
    for (unsigned i = sh->len; i > sh->cursor; i--)
        sh->line[i] = sh->line[i - 1];
    sh->line[sh->cursor++] = c;
    sh->line[++sh->len] = '\0';
    if (sh->cursor == sh->len)
        out(sh, &c, 1);
    else
        redraw(sh);
}

static void backspace(struct kshell *sh)
{
    if (!sh->cursor)
        return;
    for (unsigned i = sh->cursor - 1; i < sh->len; i++)
        sh->line[i] = sh->line[i + 1];
    sh->cursor--;
    sh->len--;
    if (sh->cursor == sh->len)
        out_str(sh, "\b \b");
    else
        redraw(sh);
}

static void clear_line(struct kshell *sh)
{
    sh->len = sh->cursor = 0;
    sh->line[0] = '\0';
    sh->overlong = false;
    sh->hist_back = 0;
}

/* History slot of the line `back` entries ago (1: the newest). */
static const char *history_at(const struct kshell *sh, unsigned back)
{
    return sh->history[(sh->hist_next + KSHELL_HISTORY - back) % KSHELL_HISTORY];
}

static void history_add(struct kshell *sh, const char *line)
{
    if (!line[0] || (sh->hist_count && str_eq(history_at(sh, 1), line)))
        return; /* empty, or the same as the last one */
    str_copy(sh->history[sh->hist_next], line, sizeof(sh->history[0]));
    sh->hist_next = (sh->hist_next + 1) % KSHELL_HISTORY;
    if (sh->hist_count < KSHELL_HISTORY)
        sh->hist_count++;
}

static void history_up(struct kshell *sh)
{
    if (sh->hist_back >= sh->hist_count)
        return;
    if (!sh->hist_back)
        str_copy(sh->saved, sh->line, sizeof(sh->saved));
    sh->hist_back++;
    unsigned back = sh->hist_back;
    set_line(sh, history_at(sh, back));
    sh->hist_back = back;
}

static void history_down(struct kshell *sh)
{
    if (!sh->hist_back)
        return;
    unsigned back = sh->hist_back - 1;
    set_line(sh, back ? history_at(sh, back) : sh->saved);
    sh->hist_back = back;
}

/* The command table: the built-in commands, then the host's. */
static const struct kshell_cmd *command_at(const struct kshell *sh, size_t i)
{
    size_t n;
    const struct kshell_cmd *b = kshell_builtin(&n);
    if (i < n)
        return &b[i];
    i -= n;
    return i < sh->cfg.extra_count ? &sh->cfg.extra[i] : NULL;
}

static bool has_prefix(const char *s, const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != prefix[i])
            return false;
    return true;
}

/* Tab: complete the command name being typed (the cursor at the end of a
 * line with no space yet). One candidate: the name and a space. Several:
 * their common prefix, or, if that adds nothing, the list of them. */
static void complete(struct kshell *sh)
{
    if (sh->cursor != sh->len)
        return;
    for (unsigned i = 0; i < sh->len; i++)
        if (sh->line[i] == ' ')
            return;
    const struct kshell_cmd *c, *first = NULL;
    size_t matches = 0, common = 0;
    for (size_t i = 0; (c = command_at(sh, i)) != NULL; i++) {
        if (!has_prefix(c->name, sh->line, sh->len))
            continue;
        if (!matches++) {
            first = c;
            common = str_len(c->name);
        } else {
            size_t j = sh->len;
            while (j < common && c->name[j] == first->name[j])
                j++;
            common = j;
        }
    }
    if (!matches)
        return;
    if (matches == 1 || common > sh->len) {
        char buf[KSHELL_LINE_MAX + 1];
        str_copy(buf, first->name, (common < KSHELL_LINE_MAX ? common : KSHELL_LINE_MAX) + 1);
        size_t n = str_len(buf);
        if (matches == 1 && n < KSHELL_LINE_MAX)
            buf[n++] = ' ';
        buf[n] = '\0';
        set_line(sh, buf);
        return;
    }
    out_str(sh, "\n");
    for (size_t i = 0; (c = command_at(sh, i)) != NULL; i++)
        if (has_prefix(c->name, sh->line, sh->len))
            kshell_printf(sh, "%s  ", c->name);
    out_str(sh, "\n");
    redraw(sh);
}

/* The final byte of ESC [ ... : arrows and Home / End. */
static void escape_final(struct kshell *sh, int byte)
{
    switch (byte) {
    case 'A':
        history_up(sh);
        break;
    case 'B':
        history_down(sh);
        break;
    case 'C':
        if (sh->cursor < sh->len) {
            sh->cursor++;
            out_str(sh, "\x1b[C");
        }
        break;
    case 'D':
        if (sh->cursor) {
            sh->cursor--;
            out_str(sh, "\x1b[D");
        }
        break;
    case 'H':
        sh->cursor = 0;
        redraw(sh);
        break;
    case 'F':
        sh->cursor = sh->len;
        redraw(sh);
        break;
    default: /* another key (Delete, F1, ...): ignored */
        break;
    }
}

/* A line was entered: run it, keep it in the history, prompt again. */
static void enter(struct kshell *sh)
{
    out_str(sh, "\n");
    if (sh->overlong) {
        kshell_printf(sh, "error: line too long (more than %u bytes); nothing run\n",
                      KSHELL_LINE_MAX);
        sh->last_status = 1;
    } else {
        history_add(sh, sh->line);
        sh->last_status = kshell_exec(sh, sh->line);
    }
    clear_line(sh);
    if (!sh->stop)
        kshell_prompt(sh);
}

bool kshell_feed(struct kshell *sh, int byte)
{
    if (sh->stop || byte < 0)
        return !sh->stop;
    bool after_cr = sh->last_cr;
    sh->last_cr = byte == KEY_CR;
    if (sh->esc == ESC_SEEN) {
        sh->esc = byte == '[' ? ESC_CSI : ESC_NONE;
        return true;
    }
    if (sh->esc == ESC_CSI) {
        if (byte >= 0x40 && byte <= 0x7e) { /* the final byte; digits and ';' come before */
            sh->esc = ESC_NONE;
            escape_final(sh, byte);
        }
        return true;
    }
    switch (byte) {
    case KEY_LF:
        if (after_cr)
            break; /* CR LF: one line end */
        enter(sh);
        break;
    case KEY_CR:
        enter(sh);
        break;
    case KEY_BACKSPACE:
    case KEY_DEL:
        backspace(sh);
        break;
    case KEY_CTRL_U:
        clear_line(sh);
        redraw(sh);
        break;
    case KEY_CTRL_C:
        out_str(sh, "^C\n");
        clear_line(sh);
        kshell_prompt(sh);
        break;
    case KEY_CTRL_A:
        sh->cursor = 0;
        redraw(sh);
        break;
    case KEY_CTRL_E:
        sh->cursor = sh->len;
        redraw(sh);
        break;
    case KEY_TAB:
        complete(sh);
        break;
    case KEY_ESC:
        sh->esc = ESC_SEEN;
        break;
    default:
        if (byte >= 0x20 && byte < 0x7f)
            insert_byte(sh, (char)byte);
        break; /* other control bytes and non-ASCII: ignored */
    }
    return !sh->stop;
}

int kshell_run(struct kshell *sh)
{
    kshell_prompt(sh);
    while (!sh->stop) {
        int byte = sh->cfg.io.read(sh->cfg.io.ctx);
        if (byte == KSHELL_EOF)
            break;
        kshell_feed(sh, byte);
    }
    if (!sh->stop)
        out_str(sh, "\n"); /* end of input in the middle of a prompt */
    return sh->last_status;
}

/* --- dispatch ------------------------------------------------------------------------- */

int kshell_exec(struct kshell *sh, const char *line)
{
    char buf[KSHELL_LINE_MAX + 1];
    char *argv[KSHELL_ARGS_MAX + 1];
    unsigned argc = 0;
    size_t n = str_len(line);
    if (n > KSHELL_LINE_MAX) {
        kshell_printf(sh, "error: line too long (more than %u bytes); nothing run\n",
                      KSHELL_LINE_MAX);
        return 1;
    }
    str_copy(buf, line, sizeof(buf));
    for (char *p = buf; *p;) {
        while (*p == ' ' || *p == '\t')
            *p++ = '\0';
        if (!*p)
            break;
        if (argc == KSHELL_ARGS_MAX) {
            kshell_printf(sh, "error: too many words (at most %u)\n", KSHELL_ARGS_MAX);
            return 1;
        }
        argv[argc++] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
    argv[argc] = NULL;
    if (!argc)
        return 0; /* an empty line */
    const struct kshell_cmd *c;
    for (size_t i = 0; (c = command_at(sh, i)) != NULL; i++)
        if (str_eq(c->name, argv[0]))
            return c->run(sh, argc, argv);
    kshell_printf(sh, "error: unknown command '%s' (help lists the commands)\n", argv[0]);
    return 1;
}
