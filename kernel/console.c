/*
 * console.c - COM1 and the VGA text screen (contract: console.h).
 *
 * VGA text mode: 80x25 cells of two bytes (character, attribute) at
 * physical 0xB8000, reached through the direct map both under the early
 * tables and under the library's (takeover.c maps the first MiB). The
 * hardware cursor follows through the CRT controller's registers.
 */
#include <stdarg.h>

#include <kmm/fmt.h>
#include <kmm/kmm.h>

#include "console.h"
#include "kernel.h"

#define COM1           0x3F8
#define UART_DATA      0 /* DLAB 0: transmit holding / receive buffer */
#define UART_IER       1 /* DLAB 0: interrupt enable */
#define UART_DLL       0 /* DLAB 1: divisor latch, low byte */
#define UART_DLH       1 /* DLAB 1: divisor latch, high byte */
#define UART_FCR       2 /* FIFO control */
#define UART_LCR       3 /* line control */
#define UART_MCR       4 /* modem control */
#define UART_LSR       5 /* line status */
#define UART_LCR_8N1   0x03
#define UART_LCR_DLAB  0x80
#define UART_LSR_DR    0x01 /* a received byte is waiting */
#define UART_LSR_THRE  0x20 /* the transmitter can take a byte */
#define UART_BAUD_BASE 115200
#define UART_BAUD      115200
#define UART_FCR_ON    0xC7 /* enable, clear both FIFOs, 14-byte trigger */
#define UART_MCR_ON    0x03 /* DTR, RTS; OUT2 off: no IRQ line */

#define VGA_PHYS       UINT64_C(0xB8000)
#define VGA_COLS       80
#define VGA_ROWS       25
#define VGA_ATTR       0x07 /* light grey on black */
#define VGA_CRTC_INDEX 0x3D4
#define VGA_CRTC_DATA  0x3D5
#define VGA_CURSOR_HI  0x0E
#define VGA_CURSOR_LO  0x0F
#define TAB_WIDTH      8

static unsigned vga_row, vga_col;
static bool vga_on = true;
static bool serial_crlf; /* '\n' goes out as CR LF (a terminal on the line) */

static volatile uint16_t *vga_cells(void)
{
    return (volatile uint16_t *)(uintptr_t)(HHDM_BASE + VGA_PHYS);
}

static void vga_cursor(void)
{
    unsigned pos = vga_row * VGA_COLS + vga_col;
    outb(VGA_CRTC_INDEX, VGA_CURSOR_HI);
    outb(VGA_CRTC_DATA, (uint8_t)(pos >> 8));
    outb(VGA_CRTC_INDEX, VGA_CURSOR_LO);
    outb(VGA_CRTC_DATA, (uint8_t)pos);
}

static void vga_clear_row(unsigned row)
{
    volatile uint16_t *cells = vga_cells();
    for (unsigned c = 0; c < VGA_COLS; c++)
        cells[row * VGA_COLS + c] = (uint16_t)(VGA_ATTR << 8 | ' ');
}

static void vga_newline(void)
{
    vga_col = 0;
    if (++vga_row < VGA_ROWS)
        return;
    volatile uint16_t *cells = vga_cells();
    for (unsigned i = 0; i < (VGA_ROWS - 1) * VGA_COLS; i++)
        cells[i] = cells[i + VGA_COLS];
    vga_row = VGA_ROWS - 1;
    vga_clear_row(vga_row);
}

/* One byte onto the screen: \n, \r, \b and \t move the cursor; other
 * control bytes are not shown. */
static void vga_put(char ch)
{
    switch (ch) {
    case '\n':
        vga_newline();
        return;
    case '\r':
        vga_col = 0;
        return;
    case '\b':
        if (vga_col > 0)
            vga_col--;
        return;
    case '\t':
        do
            vga_put(' ');
        while (vga_col % TAB_WIDTH);
        return;
    default:
        break;
    }
    if ((unsigned char)ch < ' ')
        return;
    vga_cells()[vga_row * VGA_COLS + vga_col] = (uint16_t)(VGA_ATTR << 8 | (unsigned char)ch);
    if (++vga_col == VGA_COLS)
        vga_newline();
}

void console_init(void)
{
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + UART_DLL, (uint8_t)(UART_BAUD_BASE / UART_BAUD));
    outb(COM1 + UART_DLH, 0);
    outb(COM1 + UART_LCR, UART_LCR_8N1);
    outb(COM1 + UART_FCR, UART_FCR_ON);
    outb(COM1 + UART_MCR, UART_MCR_ON);
    for (unsigned r = 0; r < VGA_ROWS; r++)
        vga_clear_row(r);
    vga_row = vga_col = 0;
    vga_cursor();
}

bool console_vga_enable(bool on)
{
    bool was = vga_on;
    vga_on = on;
    return was;
}

void console_serial_crlf(bool on)
{
    serial_crlf = on;
}

static void serial_put(uint8_t byte)
{
    while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
        __asm__ volatile("pause");
    outb(COM1 + UART_DATA, byte);
}

void console_write(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n' && serial_crlf)
            serial_put('\r');
        serial_put((uint8_t)text[i]);
        if (vga_on)
            vga_put(text[i]);
    }
    if (vga_on)
        vga_cursor();
}

void console_puts(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    console_write(s, n);
}

void kprintf(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    console_write(line, n < sizeof(line) ? n : sizeof(line) - 1);
}

void console_sink_write(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    console_write(text, len);
}

bool console_poll(uint8_t *c)
{
    if (!(inb(COM1 + UART_LSR) & UART_LSR_DR))
        return false;
    *c = inb(COM1 + UART_DATA);
    return true;
}
