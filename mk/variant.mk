# mk/variant.mk - build one variant of kmm. Called by the top-level Makefile:
#
#   make -f mk/variant.mk O=<dir> CC=<gcc|clang> WORLD=<hosted|kernel> SAN=<|asan|tsan|fuzz|noassert> <target>
#
# hosted: $(O)/libkmm.a (core + hosted port), one test executable per suite
#         ($(O)/tests/<suite>.t), the hosted demo, the benchmarks ($(O)/kmm-bench and
#         the heap peers $(O)/kmm-heap-<malloc>),
#         the fuzz targets ($(O)/fuzz-<name>, SAN=fuzz with clang).
# kernel: $(O)/libkmm.a (core only, freestanding) and the boot-stub image.

O ?= build/hosted
CC ?= gcc
WORLD ?= hosted
SAN ?=
AR ?= ar

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wundef \
        -Wvla -Wwrite-strings -Wpointer-arith -Wimplicit-fallthrough -Wformat=2
CORE_SRCS := $(sort $(wildcard src/*.c src/*/*.c src/*/*/*.c))
# The shared tests: run hosted and in the kernel.
SHARED_TEST_SRCS := $(sort $(wildcard tests/test_*.c))
# The test framework's freestanding parts, built into both worlds.
KTEST_LIB_SRCS := tests/ktest/ktest.c tests/ktest/soft_mmu.c tests/ktest/fixture.c \
        tests/ktest/heap_fixture.c
KTEST_SRCS := $(KTEST_LIB_SRCS) $(SHARED_TEST_SRCS)
# The demo kernel's shell and in-kernel benchmarks (kernel/shell/): built into
# the kernel image (kernel/kernel.mk) and, hosted, into build/<variant>/kmm-shell
# and the tests that drive them (tests/test_shell.c, tests/test_mmbench.c).
SHELL_SRCS := $(sort $(wildcard kernel/shell/*.c))
SHELL_TESTS := shell mmbench

# Freestanding: no libc headers at all (-nostdinc), only the compiler's own
# (stdint.h, stddef.h, ...). A core file that includes a libc header fails here.
# Both freestanding ports' glue headers include port/x86_64's shared half.
KERNEL_CFLAGS := -std=c11 -O2 -g $(WARN) -ffreestanding -nostdinc \
        -isystem $(shell $(CC) -print-file-name=include) \
        -mno-red-zone -mcmodel=kernel -mgeneral-regs-only -fno-pic -fno-pie \
        -fno-stack-protector -nostdlib -fno-asynchronous-unwind-tables \
        -Iinclude -Isrc -Ikernel/port -Iport/x86_64 -Itests/ktest -Ikernel/shell -Icompat -MMD -MP
# gcc inlines a memset of a known size above a few hundred bytes (a zeroed
# page) as `rep stosq`, which under QEMU's TCG runs an iteration at a time
# (a zeroed page cost 1.4x of the kernel's own memset, kernel/lib.c): small
# ones stay inline, larger ones call memset, as clang does anyway.
ifneq ($(findstring gcc,$(CC)),)
KERNEL_CFLAGS += -mmemset-strategy=unrolled_loop:256:noalign,libcall:-1:noalign
endif
ifeq ($(WORLD),kernel)
CFLAGS := $(KERNEL_CFLAGS)
LIB_SRCS := $(CORE_SRCS)
else ifeq ($(WORLD),boruix)
# The drop-in for a Limine-booted kernel like Boruix (`make boruix`): the
# library, the Boruix interface and port/boruix in one freestanding archive,
# built as Boruix builds its kernel (no SSE or MMX: it runs with CR4's SSE
# bits clear; no floating point anywhere). The mem* functions are loops that
# must not be turned into calls to themselves.
CFLAGS := $(subst -Ikernel/port,-Iport/boruix,$(KERNEL_CFLAGS)) \
        -mno-sse -mno-sse2 -mno-mmx $(if $(findstring clang,$(CC)),,-fno-tree-loop-distribute-patterns) \
        -ffunction-sections -fdata-sections
LIB_SRCS := $(CORE_SRCS) compat/boruix.c compat/limine.c $(sort $(wildcard port/boruix/*.c port/x86_64/*.c))
LIBKMM_NAME := libkmm-boruix.a
else
SAN_FLAGS_asan := -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_FLAGS_tsan := -fsanitize=thread
# Not a sanitizer: the library with its assertions compiled out through the
# hosted port's glue header, to show that none of them has a side effect.
SAN_FLAGS_noassert := -DKMM_HOSTED_NO_ASSERT
# libFuzzer (clang only): instrumented objects; the fuzz targets link the
# fuzzer's own main.
SAN_FLAGS_fuzz := -fsanitize=fuzzer-no-link -fsanitize=address,undefined -fno-sanitize-recover=all
OPT := $(if $(filter-out noassert,$(SAN)),-O1,-O2)
# Frame pointers only where sanitizer stack traces need them: the plain
# build matches the kernel build (and the benchmark peers' -O2) in omitting them.
FP_FLAGS := $(if $(filter-out noassert,$(SAN)),-fno-omit-frame-pointer)
CFLAGS := -std=c11 $(OPT) -g $(FP_FLAGS) $(WARN) $(SAN_FLAGS_$(SAN)) \
        -Iinclude -Isrc -Iport/hosted -Icompat -Itests/ktest -Ikernel/shell -MMD -MP
LDFLAGS := $(SAN_FLAGS_$(SAN)) -pthread
LIB_SRCS := $(CORE_SRCS) $(sort $(wildcard port/hosted/*.c))
# The Boruix interface (compat/, on top of the public API) and its hosted
# world: in libkmm.a, pulled in only by programs that call rust_* (a static
# archive's members link on demand); not in the preloadable malloc.
COMPAT_SRCS := compat/boruix.c compat/limine.c compat/hosted.c
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
HOSTED_TEST_SRCS := $(sort $(wildcard tests/hosted/test_*.c))
TEST_SUPPORT_SRCS := $(KTEST_LIB_SRCS) tests/ktest/main_hosted.c tests/ktest/env_hosted.c \
        tests/ktest/faults_hosted.c tests/ktest/window_hosted.c
BENCH_SRCS := $(sort $(wildcard bench/*.c))
HEAP_PEERS := glibc jemalloc mimalloc
HEAP_PEER_LIBS_jemalloc := -ljemalloc
HEAP_PEER_LIBS_mimalloc := -lmimalloc
HEAP_PEER_EXES := $(patsubst %,$(O)/kmm-heap-%,$(HEAP_PEERS))
endif

LIBKMM := $(O)/$(or $(LIBKMM_NAME),libkmm.a)
obj = $(patsubst %.c,$(O)/obj/%.o,$(1))
LIB_OBJS := $(call obj,$(LIB_SRCS) $(COMPAT_SRCS))

.PHONY: lib tests demo shell kernel-image bench fuzz malloc
lib: $(LIBKMM)

ifeq ($(WORLD),boruix)
# One relocatable object whose only globals are the interface (rust_*), the
# library's kmm_* names and the weak mem*: the library's internal
# cross-file names (pmm_*, vmm_*, heap_*, ...) become local, so none can
# clash with a kernel's own (Boruix has its own vmm_init). One object also
# means the Limine request in it is always linked (tools/boruix-archive-test.t).
$(LIBKMM): $(LIB_OBJS)
	@rm -f $@
	$(LD) -r -o $(O)/kmm-boruix.o $^
	objcopy --wildcard --keep-global-symbol='rust_*' --keep-global-symbol='kmm_*' \
	  --keep-global-symbol='mem*' $(O)/kmm-boruix.o
	$(AR) rcs $@ $(O)/kmm-boruix.o
else
$(LIBKMM): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^
endif

# Test objects are intermediate to make's pattern chains; keep them, or every
# run deletes and rebuilds them.
.SECONDARY:

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The library core also rejects implicit narrowing and sign changes: a frame
# number, an order or a count silently cut is a corrupted structure.
CORE_WARN := -Wconversion -Wsign-conversion
$(call obj,$(CORE_SRCS) $(COMPAT_SRCS)): CFLAGS += $(CORE_WARN)

ifeq ($(WORLD),kernel)
include kernel/kernel.mk
kernel-image: $(KERNEL_ELF32) $(KERNEL_ISO)
else ifeq ($(WORLD),boruix)
# lib only.
else
# One executable per test file; prove runs each and reads its KTAP.
# (Test file names are unique across tests/ and tests/hosted/.)
TEST_EXES := $(patsubst test_%.c,$(O)/tests/%.t,$(notdir $(SHARED_TEST_SRCS) $(HOSTED_TEST_SRCS)))
SUPPORT_OBJS := $(call obj,$(TEST_SUPPORT_SRCS))
# The examples (examples/*.c) are built with the tests, and each runs as a
# test through tools/example-test.sh, which checks its output.
EXAMPLE_EXES := $(patsubst examples/%.c,$(O)/examples/%,$(EXAMPLE_SRCS))
EXAMPLE_TESTS := $(patsubst examples/%.c,$(O)/tests/example_%.t,$(EXAMPLE_SRCS))
tests: $(TEST_EXES) $(EXAMPLE_TESTS)

$(O)/examples/%: $(O)/obj/examples/%.o $(LIBKMM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(O)/tests/example_%.t: $(O)/examples/% tools/example-test.sh
	@mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec tools/example-test.sh %s\n' $< > $@
	chmod +x $@

$(O)/tests/%.t: $(O)/obj/tests/test_%.o $(SUPPORT_OBJS) $(LIBKMM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(O)/tests/%.t: $(O)/obj/tests/hosted/test_%.o $(SUPPORT_OBJS) $(LIBKMM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

demo: $(O)/kmm-demo
$(O)/kmm-demo: $(O)/obj/tools/hosted_demo.o $(LIBKMM)
	$(CC) $(LDFLAGS) -o $@ $^

# The shell over a simulated machine, on stdin/stdout (tools/hosted_shell.c).
shell: $(O)/kmm-shell
$(O)/kmm-shell: $(call obj,tools/hosted_shell.c $(SHELL_SRCS)) $(LIBKMM)
	$(CC) $(LDFLAGS) -o $@ $^

# The suites that drive the shell and the benchmarks link them too (static
# pattern rules: the library stays last on the line).
SHELL_TEST_EXES := $(patsubst %,$(O)/tests/%.t,$(SHELL_TESTS))
$(SHELL_TEST_EXES): $(O)/tests/%.t: $(O)/obj/tests/test_%.o $(call obj,$(SHELL_SRCS)) \
                    $(SUPPORT_OBJS) $(LIBKMM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

# The preloadable malloc (malloc/, hosted only): the library and the hosted
# port built again position-independent, with initial-exec TLS (the port's
# hosted_cpu is read on every call; the library is preloaded, never
# dlopen'ed) and hidden symbols, so that the .so exports the malloc family
# only. Its test programs (tests/malloc/) are ordinary programs, run with
# and without it preloaded by tests/malloc/*.t.
PIC_FLAGS := -fPIC -ftls-model=initial-exec -fvisibility=hidden
pic_obj = $(patsubst %.c,$(O)/pic/%.o,$(1))
MALLOC_SRCS := $(sort $(wildcard malloc/*.c))
MALLOC_TEST_SRCS := $(sort $(wildcard tests/malloc/*.c))
malloc: $(O)/libkmm-malloc.so $(patsubst tests/malloc/%.c,$(O)/malloc-tests/%,$(MALLOC_TEST_SRCS))

$(O)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIC_FLAGS) -c $< -o $@

$(call pic_obj,$(CORE_SRCS)): CFLAGS += $(CORE_WARN)

$(O)/libkmm-malloc.so: $(call pic_obj,$(LIB_SRCS) $(MALLOC_SRCS))
	$(CC) -shared -pthread -Wl,--no-undefined -Wl,-z,now -o $@ $^

# The compilers know malloc: clang drops an allocation whose result is only
# compared with NULL, and a malloc-free pair. The tests call them for real.
$(call obj,$(MALLOC_TEST_SRCS)): CFLAGS += -fno-builtin

$(O)/malloc-tests/%: $(O)/obj/tests/malloc/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

bench: $(O)/kmm-bench $(HEAP_PEER_EXES)
$(O)/kmm-bench: $(call obj,$(BENCH_SRCS)) $(LIBKMM)
	$(CC) $(LDFLAGS) -o $@ $^

# The heap peers of H1 and H2 (bench/peers/heap_peer.c): one executable per
# system malloc, each run by kmm-bench as a process of its own so that no
# allocator's malloc meets another's. Each links the measuring tools and the
# H2 trace, not the library; jemalloc and mimalloc are Debian's packages
# (tools/deps.sh).
# Static pattern rules: make's built-in chains must not reach them.
HEAP_PEER_OBJS := $(patsubst %,$(O)/obj/bench/peers/heap_peer-%.o,$(HEAP_PEERS))
$(HEAP_PEER_OBJS): $(O)/obj/bench/peers/heap_peer-%.o: bench/peers/heap_peer.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DBENCH_PEER_$* -c $< -o $@
$(HEAP_PEER_EXES): $(O)/kmm-heap-%: $(O)/obj/bench/peers/heap_peer-%.o \
                  $(call obj,bench/measure.c bench/heap_trace.c)
	$(CC) $(LDFLAGS) -o $@ $^ $(HEAP_PEER_LIBS_$*)

# Fuzz targets (SAN=fuzz, CC=clang): tests/fuzz/fuzz_<name>.c with the test
# file whose randomised run it drives and the test support, without the test
# runner's main.
FUZZ_SUPPORT_OBJS := $(call obj,$(KTEST_LIB_SRCS) tests/ktest/env_hosted.c)
fuzz: $(O)/fuzz-vm $(O)/fuzz-page $(O)/fuzz-vmalloc $(O)/fuzz-heap $(O)/fuzz-fork
# Coverage guides the fuzzer through the library only: the tests' own loops
# (the shadow models, the software MMU) and kmm_check's walks over every
# frame would drown it and slow every run.
NO_COVERAGE_CFLAGS := $(filter-out -fsanitize=fuzzer-no-link,$(CFLAGS))
$(O)/obj/tests/%.o $(O)/obj/src/diag/%.o: CFLAGS := $(NO_COVERAGE_CFLAGS)
$(O)/fuzz-vm: $(call obj,tests/fuzz/fuzz_vm.c tests/test_vm_random.c)
$(O)/fuzz-page: $(call obj,tests/fuzz/fuzz_page.c tests/test_page.c)
$(O)/fuzz-vmalloc: $(call obj,tests/fuzz/fuzz_vmalloc.c tests/test_vmalloc.c)
$(O)/fuzz-heap: $(call obj,tests/fuzz/fuzz_heap.c tests/test_heap_random.c)
$(O)/fuzz-fork: $(call obj,tests/fuzz/fuzz_fork.c tests/test_vm_fork_random.c)
$(O)/fuzz-%: $(FUZZ_SUPPORT_OBJS) $(LIBKMM)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $(filter-out $(LIBKMM),$^) $(LIBKMM)
endif

-include $(shell find $(O) -name '*.d' 2>/dev/null)
