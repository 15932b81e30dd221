/*
 * kmm/dump.h - the machine-readable dump: the instance's state as one JSON
 * document, for tools (tools/mempicture.py draws it; docs/pictures.md).
 *
 * The document (KMM_DUMP_VERSION 1), one object; every number is a JSON
 * integer, addresses and sizes in bytes, frames as frame numbers (pfn,
 * 4 KiB each):
 *
 *   version      KMM_DUMP_VERSION
 *   kmm          kmm_version()
 *   page_size, cpus, nodes
 *   memmap       the resolved physical memory map: [{base, length, type}]
 *                with kmm_mem_type_name's names
 *   zones        every zone of every node that has memory: {zone, node,
 *                start, end (its address range, clipped to the frames that
 *                may exist), managed, free, pcp, deferred (pages),
 *                alloc_calls, free_calls, free_blocks: [order 0 .. 10]}
 *   frames       {pfn_end, runs: [{pfn, count, state, zone, node, order}]}:
 *                every frame number below pfn_end in exactly one run, runs
 *                in ascending order. A run is consecutive frames of the same
 *                state, zone, node and order, taken block by block: a
 *                block's interior frames count with its head, so a free
 *                block of order 10 is 1024 frames of state "free", order
 *                10. States: "absent" (no RAM), "reserved", "free",
 *                "allocated", "pcp" (free in a CPU's cache), "pagetable",
 *                "slab" (the heap's), "interior" (a frame outside any block:
 *                corruption kmm_check reports), "deferred" (descriptors not
 *                written yet: the section's usable pages, its holes with
 *                them). order is the block's for free, allocated and slab,
 *                0 otherwise; zone "DMA", "DMA32" or "Normal" (an absent
 *                frame's by its address).
 *   heap         the totals of kmm_heap_stats, and caches: [{name,
 *                object_size, objects_per_slab, pages_per_slab,
 *                active_objects, total_objects, active_slabs, total_slabs,
 *                cpu_cached, lent}] for every cache kmm_heap_cache_at lists
 *   kva          the window {base, size, used_pages, vmalloc_pages,
 *                vmap_pages} and areas: [{va, size, kind, pages, caller}] as
 *                /proc/vmallocinfo lists them
 *   page_tables  {levels, kernel: {mapped_4k, mapped_2m, mapped_1g, owned,
 *                tables: [top level first], table_bytes}, user_spaces,
 *                user_table_bytes}
 *
 * Fields may be added in a later version of the same number; a change of
 * meaning bumps it.
 */
#ifndef KMM_DUMP_H
#define KMM_DUMP_H

#include <kmm/kmm.h>

#define KMM_DUMP_VERSION 1

/*
 * kmm_dump_json - write the dump of k to sink, in pieces of text of at most
 * 159 characters (a frame run, cache or area to a line), the whole a JSON
 * document ending in '\n'. It needs no memory. Returns KMM_OK, or, with nothing written:
 *   KMM_EINVAL  sink or its write function is NULL (misuse, counted under
 *               KMM_LAYER_DIAG and logged), or k is NULL (nothing to count
 *               it in);
 *   KMM_ESTATE  k is not a live instance (torn down).
 * Locks: the figures as kmm_report takes them (each zone lock, the window
 * lock, an address space's lock, in turn); the frames batch by batch, each
 * batch (at most one section, a few dozen runs) read under the growth lock
 * and every zone lock (kmm_check's order), the sink called with none held.
 * So each batch is a snapshot; the whole is exact when no other CPU changes
 * memory meanwhile (single pages moving through the CPU caches may be read
 * mid-move otherwise). IRQs on. O(frames + areas + caches).
 */
int kmm_dump_json(struct kmm *k, const struct kmm_sink *sink);

#endif /* KMM_DUMP_H */
