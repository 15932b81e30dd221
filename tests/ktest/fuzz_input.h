/*
 * fuzz_input.h - the input a fuzz target hands to the test it drives. A
 * libFuzzer target (tests/fuzz/) sets it and runs one test through
 * ktest_run; the test takes its choices from the bytes instead of its
 * random generator, so fuzzing drives the same operation sequences as the
 * randomised tests, checked the same way. NULL outside a fuzzer.
 */
#ifndef KTEST_FUZZ_INPUT_H
#define KTEST_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

extern const uint8_t *kt_fuzz_input;
extern size_t kt_fuzz_input_len;

#endif /* KTEST_FUZZ_INPUT_H */
