# kmm - the Boruix kernel memory manager. GNU make.
#
#   make            build/hosted/libkmm.a and build/kernel/libkmm.a (gcc) and the demo kernel
#                   (ELF, ELF32 for -kernel, GRUB ISO: docs/kernel.md)
#   make run        the main job: the demo kernel's GRUB ISO booted under QEMU (TCG) with its
#                   shell on this terminal (Ctrl-A X leaves QEMU; docs/shell.md)
#   make demo       the hosted demo (initialises kmm on a simulated machine's map, its report),
#                   its dump and pictures of it in build/demo/ (docs/pictures.md)
#   make bench-kernel  the Linux anchor's workloads in the demo kernel under QEMU:
#                   build/bench/kernel-bench.log (docs/performance.md)
#   make bench      the benchmarks of WORKLOADS.md, hosted: a table and build/bench/results.json
#   make bench-instr  their instructions per operation (callgrind): build/bench/instr.txt
#   make test       everything CI runs: lint, gcc and clang builds, sanitizers, QEMU boot
#   make check      the quick inner loop: gcc + ASan/UBSan hosted tests only
#   make fuzz       the libFuzzer targets for FUZZ_SECONDS each (600; make test runs 30)
#   make install    both worlds under PREFIX: headers, libkmm.a (hosted), libkmm-boruix.a
#                   (freestanding), kmm.pc and kmm-freestanding.pc
#   make boruix     build/boruix/libkmm-boruix.a, the drop-in for a Limine-booted kernel
#   make malloc     build/hosted/libkmm-malloc.so, a malloc over the heap for any program
#                   (LD_PRELOAD), and its test programs; gcc and clang
#   make lint       format check, the layering of src/ (tools/check-layers.sh), cppcheck, clang-tidy
#   make format     reformat every source file
#   make compile_commands.json
#
# Each variant (compiler x world x sanitizer) builds into its own directory
# through mk/variant.mk, so variants never overwrite each other:
#   build/hosted  build/kernel          gcc, plain
#   build/clang/hosted  build/clang/kernel
#   build/asan  build/clang/asan        ASan + UBSan (hosted tests)
#   build/tsan                          ThreadSanitizer (hosted tests)
#   build/noassert                      gcc, the library's assertions compiled out
#   build/fuzz                          libFuzzer targets (clang, ASan + UBSan)

MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
VARIANT = $(MAKE) -f mk/variant.mk -j$(JOBS)

.PHONY: boruix all deps lib kernel run demo bench-kernel test check lint layers format format-check cppcheck clang-tidy \
        hosted-tests kernel-images clean bench bench-instr fuzz fuzz-targets install malloc

all: lib kernel

deps:
	@tools/deps.sh

lib:
	$(VARIANT) O=build/hosted CC=gcc WORLD=hosted lib
	$(VARIANT) O=build/kernel CC=gcc WORLD=kernel lib

kernel:
	$(VARIANT) O=build/kernel CC=gcc WORLD=kernel kernel-image

# The drop-in for a Limine-booted kernel like Boruix: build/boruix/libkmm-boruix.a
# links in place of Boruix's librust_memory.a (docs/porting.md, "Boruix in ten
# minutes"); tools/boruix-archive-test.t checks it.
boruix:
	$(VARIANT) O=build/boruix CC=gcc WORLD=boruix lib

# --- the main job ------------------------------------------------------------
# The GRUB ISO in the shell mode, under TCG (KVM does not run guest code here:
# issue 12), the serial line on this terminal (-nographic: COM1 on stdio
# with QEMU's monitor behind Ctrl-A). `halt` leaves through isa-debug-exit
# (33), Ctrl-A X with 0: both are a normal end.
QEMU_RUN = qemu-system-x86_64 -machine pc -accel tcg -no-reboot \
           -device isa-debug-exit,iobase=0xf4,iosize=0x04
RUN_MEM ?= 512M
# The serial line's copy, where a `dump` typed at the shell can be drawn from.
RUN_LOG ?= build/kernel/serial.log

run: deps
	$(VARIANT) O=build/kernel CC=gcc WORLD=kernel build/kernel/kmm-shell.iso
	@echo "kmm: booting build/kernel/kmm-shell.iso under QEMU ($(RUN_MEM)); the shell is on this"
	@echo "kmm: terminal: type help. Leave with halt, or Ctrl-A then X."
	@echo "kmm: pictures of memory: type dump, leave, then tools/mempicture.py $(RUN_LOG) -o build/pictures"
	@echo "kmm: (the serial line is saved in $(RUN_LOG); docs/pictures.md)"
	@$(QEMU_RUN) -cpu max -m $(RUN_MEM) -nographic -cdrom build/kernel/kmm-shell.iso \
	  -chardev stdio,id=console,mux=on,logfile=$(RUN_LOG) -serial chardev:console -mon chardev=console; \
	  rc=$$?; [ $$rc = 0 ] || [ $$rc = 33 ]

# The demo's dump (kmm_dump_json at its busy moment) and its pictures
# (tools/mempicture.py) go to build/demo/.
demo: deps
	$(VARIANT) O=build/hosted CC=gcc WORLD=hosted demo
	@mkdir -p build/demo
	build/hosted/kmm-demo --dump build/demo/dump.json
	tools/mempicture.py build/demo/dump.json -o build/demo
	@echo "kmm: the pictures of the demo's memory are build/demo/physical.png, buddy.png and caches.png"

# --- benchmarks (docs/performance.md) ------------------------------------------
# bench: instructions per op under callgrind (a few seconds), then the timed
# runs; results.json gets both. bench-instr: the instruction counts alone.
bench: bench-instr
	build/hosted/kmm-bench -o build/bench/results.json -i build/bench/instr.txt

# bench-kernel: the bench boot mode (kernel/shellmode.c) under the Linux
# anchor's QEMU command line (../shared/linux-anchor/README.md: TCG,
# -cpu max,la57=off, -m 2G, -smp 1), its serial log in build/bench/kernel-bench.log; fails
# unless every workload ran without a failure. BENCH_QEMU adds QEMU options:
# BENCH_QEMU='-icount shift=0' makes the guest's clock count instructions
# (1 ns each), so ns/op reads as guest instructions per op, whatever the load.
# BENCH_ARGS adds the Linux module's parameters to the kernel command line:
# BENCH_ARGS='mmbench.tests=0x1c0 mmbench.reps=1 mmbench.scale_div=4' runs
# M1 alone (bits of kernel/shell/mmbench.h), once, at a quarter size.
BENCH_QEMU ?=
BENCH_ARGS ?=
bench-kernel: SHELL := /bin/bash
bench-kernel: deps
	$(VARIANT) O=build/kernel CC=gcc WORLD=kernel build/kernel/kmm-test.elf32
	@mkdir -p build/bench
	$(QEMU_RUN) -cpu max,la57=off -m 2G -smp 1 $(BENCH_QEMU) -display none -monitor none \
	  -serial stdio </dev/null -kernel build/kernel/kmm-test.elf32 -append "bench $(BENCH_ARGS)" | tee build/bench/kernel-bench.log; \
	  [ $${PIPESTATUS[0]} = 33 ]

bench-instr: deps
	$(VARIANT) O=build/hosted CC=gcc WORLD=hosted bench
	@mkdir -p build/bench
	tools/bench-instr.sh build/hosted/kmm-bench build/bench/instr.txt

# --- tests -------------------------------------------------------------------
# Every variant's tests, and the boot stub built by each compiler, in one
# prove run: one summary, and prove's exit status is the verdict.
TEST_VARIANTS := build/hosted:gcc: build/clang/hosted:clang: build/asan:gcc:asan \
                 build/clang/asan:clang:asan build/tsan:gcc:tsan build/noassert:gcc:noassert
KERNEL_VARIANTS := build/kernel:gcc build/clang/kernel:clang
# The self-test boots of each kernel variant (tools/run-tests.sh: path-levels-RAM):
# between the two compilers, both boot paths (QEMU -kernel with Multiboot1,
# the GRUB ISO with Multiboot2), 4 and 5 paging levels, 128 MiB and 4 GiB.
KERNEL_BOOTS := build/kernel:elf-4-128M,iso-5-4G,efi-5-512M build/clang/kernel:elf-5-4G,iso-4-128M

hosted-tests:
	@set -e; for v in $(TEST_VARIANTS); do \
	  IFS=: read o cc san <<< "$$v"; \
	  $(VARIANT) O=$$o CC=$$cc WORLD=hosted SAN=$$san lib tests demo shell; \
	done

kernel-images:
	@set -e; for v in $(KERNEL_VARIANTS); do \
	  IFS=: read o cc <<< "$$v"; \
	  $(VARIANT) O=$$o CC=$$cc WORLD=kernel lib kernel-image; \
	done

# The preloadable malloc (malloc/): tests/malloc/programs.t runs real programs
# and the stress program on the gcc build; the clang build keeps it warning-free.
malloc:
	$(VARIANT) O=build/hosted CC=gcc WORLD=hosted malloc
	$(VARIANT) O=build/clang/hosted CC=clang WORLD=hosted malloc

test: SHELL := /bin/bash
test: deps lint hosted-tests kernel-images fuzz-targets bench malloc boruix
	tools/run-tests.sh tools/readme-test.t tools/install-test.t tools/boruix-headers-test.t \
	  tools/boruix-archive-test.t tests/malloc/programs.t tools/shell-test.t \
	  tools/kernel-shell-test.t tools/dump-test.t \
	  $(foreach v,$(TEST_VARIANTS),$(firstword $(subst :, ,$(v)))) \
	  --kernel $(KERNEL_BOOTS) --fuzz build/fuzz

# libFuzzer targets (tests/fuzz/), clang + ASan + UBSan. `make test` runs each
# for FUZZ_SECONDS (30); `make fuzz FUZZ_SECONDS=3600` for a longer hunt.
fuzz-targets:
	$(VARIANT) O=build/fuzz CC=clang WORLD=hosted SAN=fuzz fuzz

fuzz: deps fuzz-targets
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),600) tools/run-tests.sh --fuzz build/fuzz

hosted-tests kernel-images: SHELL := /bin/bash

check: deps
	$(VARIANT) O=build/asan CC=gcc WORLD=hosted SAN=asan tests shell
	KMM_SHELL=build/asan/kmm-shell tools/run-tests.sh build/asan tools/shell-test.t

# --- lint ----------------------------------------------------------------------
FORMAT_FILES = $(shell git ls-files -co --exclude-standard '*.c' '*.h' 2>/dev/null)
LINT_SRCS = $(shell git ls-files -co --exclude-standard 'src/*.c' 'port/hosted/*.c' 'compat/*.c' \
              'examples/*.c' 'tests/*.c' 'tools/*.c' 'bench/*.c' 'malloc/*.c' 2>/dev/null)
KERNEL_LINT_SRCS = $(shell git ls-files -co --exclude-standard 'kernel/*.c' 'port/x86_64/*.c' 2>/dev/null)
BORUIX_LINT_SRCS = $(shell git ls-files -co --exclude-standard 'port/boruix/*.c' 2>/dev/null)

lint: format-check layers cppcheck clang-tidy

# Every include in src/ against the layering (docs/architecture.md, "Layers").
layers:
	tools/check-layers.sh

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

CPPCHECK = cppcheck --quiet --error-exitcode=1 --std=c11 \
	  --enable=warning,style,performance,portability --inline-suppr \
	  --suppress=missingIncludeSystem --suppressions-list=tools/cppcheck.supp -D__x86_64__ \
	  -Iinclude -Isrc -Itests/ktest

# Twice: each world with its own glue header (kmm_port_impl.h).
cppcheck:
	$(CPPCHECK) -Iport/hosted $(LINT_SRCS)
	$(CPPCHECK) -Ikernel/port -Iport/x86_64 $(KERNEL_LINT_SRCS)
	$(CPPCHECK) -Iport/boruix -Iport/x86_64 -Icompat $(BORUIX_LINT_SRCS)

clang-tidy: compile_commands.json
	clang-tidy --quiet -p . $(LINT_SRCS) $(KERNEL_LINT_SRCS) $(BORUIX_LINT_SRCS) 2>&1 | { grep -Ev '^[0-9]+ warnings? generated' || true; }; \
	  test $${PIPESTATUS[0]} -eq 0

clang-tidy: SHELL := /bin/bash

# compile_commands.json for editors and clang-tidy: every C file with the
# flags of the world it is built in (kernel/ freestanding, the rest hosted).
# Written every time (it is cheap): a renamed or added file must show up.
compile_commands.json: FORCE
	tools/compile-commands.sh > $@

FORCE:

# --- install -------------------------------------------------------------------
# Both worlds under PREFIX, each with its pkg-config file:
#   kmm                the hosted build, for programs that use kmm in user space
#                      (tests, tools, simulations, Boruix code run as a program):
#                      $(PREFIX)/lib/libkmm.a, the hosted port's headers in
#                      $(PREFIX)/include/kmm/hosted/;
#                      cc prog.c $$(pkg-config --cflags --libs kmm)
#   kmm-freestanding   the drop-in for a Limine-booted kernel (make boruix):
#                      $(PREFIX)/lib/libkmm-boruix.a; a kernel's Makefile adds
#                      $$(pkg-config --cflags kmm-freestanding) to its CFLAGS and
#                      $$(pkg-config --libs kmm-freestanding) to its link
#                      (docs/porting.md, "Boruix in ten minutes").
# The public headers (include/kmm/, include/boruix/) serve both. A kernel
# with a port of its own builds src/ with its glue header instead (docs/porting.md).
PREFIX ?= /usr/local
INSTALL_TO = $(DESTDIR)$(PREFIX)
install:
	@case '$(INSTALL_TO)' in *[[:space:]\|\&\\\']*) \
	  echo "install: PREFIX and DESTDIR must not hold spaces, quotes, |, & or \\" >&2; exit 1;; esac
	$(VARIANT) O=build/hosted CC=gcc WORLD=hosted lib
	$(VARIANT) O=build/boruix CC=gcc WORLD=boruix lib
	install -d '$(INSTALL_TO)/include/kmm/hosted' '$(INSTALL_TO)/include/boruix' \
	  '$(INSTALL_TO)/lib/pkgconfig'
	install -m 644 include/kmm/*.h '$(INSTALL_TO)/include/kmm/'
	install -m 644 include/boruix/*.h '$(INSTALL_TO)/include/boruix/'
	install -m 644 port/hosted/kmm_port_impl.h port/hosted/hosted.h \
	  '$(INSTALL_TO)/include/kmm/hosted/'
	install -m 644 build/hosted/libkmm.a build/boruix/libkmm-boruix.a '$(INSTALL_TO)/lib/'
	sed 's|@PREFIX@|$(PREFIX)|' tools/kmm.pc.in > '$(INSTALL_TO)/lib/pkgconfig/kmm.pc'
	sed 's|@PREFIX@|$(PREFIX)|' tools/kmm-freestanding.pc.in \
	  > '$(INSTALL_TO)/lib/pkgconfig/kmm-freestanding.pc'

clean:
	rm -rf build compile_commands.json
