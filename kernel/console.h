/*
 * console.h - the kernel console: COM1 (115200 8N1, polled) mirrored to the
 * VGA text screen (80x25 at physical 0xB8000, through the direct map).
 *
 * Every output call may run in any context (traps included): it busy-waits
 * on the UART and takes no lock (one CPU; a trap that prints in the middle
 * of a line interleaves with it, which is what a crash report wants).
 */
#ifndef KMM_KERNEL_CONSOLE_H
#define KMM_KERNEL_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Program the UART and clear the screen. Once, first thing in kmain. */
void console_init(void);

/* Write len bytes as they are ("\n" moves the VGA cursor to the next line;
 * the serial line gets the bytes unchanged unless console_serial_crlf). */
void console_write(const char *text, size_t len);

/* Write a NUL-terminated string. */
void console_puts(const char *s);

/* printf to the console (kmm/fmt.h's formats); a line longer than 255
 * bytes is cut. */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A kmm_sink writer that sends text to the console (ctx unused). */
void console_sink_write(void *ctx, const char *text, size_t len);

/* A received byte from COM1 into *c: true, or false at once if none is
 * waiting (for a shell's input loop). */
bool console_poll(uint8_t *c);

/* Send each '\n' to the serial line as CR LF from now on (off by default:
 * the test boots' KTAP stays byte for byte what the kernel writes), for a
 * terminal on the line, whose raw mode would not return the carriage (the
 * shell mode under `make run`). */
void console_serial_crlf(bool on);

/* Turn the VGA mirror off (on is the default); for output that should stay
 * on the serial line only, such as thousands of test lines. Returns the
 * previous setting. */
bool console_vga_enable(bool on);

#endif /* KMM_KERNEL_CONSOLE_H */
