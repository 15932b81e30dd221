# kernel/kernel.mk - the demo kernel (docs/kernel.md) with the in-kernel test runner.
#
# Included by the top-level Makefile for each kernel variant. It defines,
# before including:
#   CC             gcc or clang
#   O              the variant's output directory (build/kernel, ...)
#   KERNEL_CFLAGS  the freestanding flags, with -Iinclude -Ikernel/port -Iport/x86_64
#                  -Itests/ktest
#   LIBKMM         $(O)/libkmm.a, built with KERNEL_CFLAGS
#   KTEST_SRCS     the test framework's freestanding parts (ktest.c, soft_mmu.c,
#                  fixture.c) and the shared tests (tests/test_*.c)
#   SHELL_SRCS     the shell and the in-kernel benchmarks (kernel/shell/*.c)
# and gets:
#   KERNEL_ELF     $(O)/kmm-test.elf    ELF64, for debuggers (gdb, addr2line)
#   KERNEL_ELF32   $(O)/kmm-test.elf32  the same image as ELF32, for QEMU -kernel
#                                       (tools/boot-test.sh $(KERNEL_ELF32))
#   KERNEL_ISO     $(O)/kmm-selftest.iso  a GRUB (BIOS) CD booting it by Multiboot2
#                                       in the self-test mode; $(O)/kmm-MODE.iso
#                                       boots mode MODE (kernel/kmain.c)
#
# Every other name here starts with KOBJ. Recipes read only target-specific
# copies of the variant's settings, so including this file once per variant
# (with different O, CC, KERNEL_CFLAGS) in one make run is safe.
#
# The image is linked with GNU ld for both compilers: the linker script and
# the Multiboot a.out kludge depend on its file layout (kernel/linker.ld).

KOBJ_DIR := $(O)/kobj
# compat/boruix.c: the Boruix interface over the kernel's own instance
# (kernel/boruix_world.c), for the shell's Boruix commands.
KOBJ_C := $(wildcard kernel/*.c kernel/port/*.c port/x86_64/*.c) $(SHELL_SRCS) $(KTEST_SRCS) compat/boruix.c
KOBJ_S := $(wildcard kernel/*.S)
KOBJ_OBJS := $(patsubst %.c,$(KOBJ_DIR)/%.o,$(KOBJ_C)) $(patsubst %.S,$(KOBJ_DIR)/%.o,$(KOBJ_S))

KERNEL_ELF := $(O)/kmm-test.elf
KERNEL_ELF32 := $(O)/kmm-test.elf32
KERNEL_ISO := $(O)/kmm-selftest.iso

$(KOBJ_DIR)/%.o: private KOBJ_CC := $(CC)
$(KOBJ_DIR)/%.o: private KOBJ_CFLAGS := $(KERNEL_CFLAGS)

$(KOBJ_DIR)/%.o: %.c
	@mkdir -p $(@D)
	$(KOBJ_CC) $(KOBJ_CFLAGS) -MMD -MP -c $< -o $@

$(KOBJ_DIR)/%.o: %.S
	@mkdir -p $(@D)
	$(KOBJ_CC) $(KOBJ_CFLAGS) -MMD -MP -c $< -o $@

$(KERNEL_ELF): private KOBJ_LINK := $(KOBJ_OBJS) $(LIBKMM)
$(KERNEL_ELF): $(KOBJ_OBJS) $(LIBKMM) kernel/linker.ld
	ld -nostdlib -z max-page-size=0x1000 -z noexecstack -T kernel/linker.ld -o $@ $(KOBJ_LINK)

# The a.out kludge in the header tells the loader where everything goes;
# the ELF32 wrapper only satisfies QEMU, which refuses ELF64 for -kernel
# when it has to read program headers.
$(KERNEL_ELF32): $(KERNEL_ELF)
	objcopy -O elf32-i386 $< $@

# One ISO per boot mode: grub.cfg names the mode on the kernel's command
# line. grub-mkrescue (grub-pc-bin, xorriso: tools/deps.sh) builds a BIOS
# image; it is quiet unless it fails.
$(O)/kmm-%.iso: $(KERNEL_ELF32) kernel/grub.cfg.in
	@rm -rf $(@:.iso=.isodir)
	@mkdir -p $(@:.iso=.isodir)/boot/grub
	cp $< $(@:.iso=.isodir)/boot/kmm.elf
	sed 's/@MODE@/$*/g' kernel/grub.cfg.in > $(@:.iso=.isodir)/boot/grub/grub.cfg
	grub-mkrescue -o $@ $(@:.iso=.isodir) > $@.log 2>&1 || { cat $@.log; rm -f $@; exit 1; }

-include $(KOBJ_OBJS:.o=.d)
