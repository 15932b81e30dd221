/*
 * init.c - creating and tearing down an instance.
 *
 * kmm_init validates everything before it writes a byte (seL4's habit): the
 * config, the map, and that the instance fits somewhere. Only then does it
 * carve the instance out of usable memory and fill it in, with code that
 * cannot fail.
 */
#include "internal.h"

#include "heap/api.h"
#include "pmm/api.h"
#include "pmm/map.h"

#include <kmm/fmt.h>

#include "vmm/kva.h"
#include "vmm/vmm.h"

/* Checks one region list (kmm_memmap_validate) and logs its first bad entry. */
KMM_INIT static bool list_is_valid(struct kmm_port *p, const struct kmm_region *list, size_t count,
                                   const char *which)
{
    long bad = kmm_memmap_validate(list, count);
    if (bad == KMM_MEMMAP_VALID)
        return true;
    if (list && (size_t)bad < count) {
        const struct kmm_region *r = &list[bad];
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: %s %ld invalid: base 0x%llx length 0x%llx type %u",
                 which, bad, (unsigned long long)r->base, (unsigned long long)r->length, r->type);
    } else {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: %zu entries in the %s list", count, which);
    }
    return false;
}

/* A reservation must be of a type that beats usable memory: one of type
 * usable would reserve nothing, and the pages inside it would be handed
 * out (length 0 describes nothing and is ignored, as everywhere). */
KMM_INIT static bool reservations_reserve(struct kmm_port *p, const struct kmm_region *list,
                                          size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct kmm_region *r = &list[i];
        if (r->type == KMM_MEM_USABLE && r->length) {
            kmm_logf(p, KMM_LOG_ERR,
                     "kmm_init: reserved range %zu (base 0x%llx length 0x%llx) is of type usable, "
                     "which reserves nothing",
                     i, (unsigned long long)r->base, (unsigned long long)r->length);
            return false;
        }
    }
    return true;
}

KMM_INIT static bool config_is_valid(const struct kmm_config *cfg, struct kmm_port *p)
{
    if (!cfg->port) {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: config has no port");
        return false;
    }
    if (cfg->paging_levels != 0 && cfg->paging_levels != 4 && cfg->paging_levels != 5) {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: paging_levels %u, not 4 or 5", cfg->paging_levels);
        return false;
    }
    if (cfg->cpu_count == 0 || cfg->cpu_count > KMM_MAX_CPUS) {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: cpu_count %u outside 1..%u", cfg->cpu_count,
                 KMM_MAX_CPUS);
        return false;
    }
    if ((!cfg->regions && cfg->region_count) || (!cfg->reserved && cfg->reserved_count)) {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: NULL region list with a non-zero count");
        return false;
    }
    if (!kva_config_valid(cfg, cfg->paging_levels == 5 ? 5 : 4, p))
        return false;
    if (cfg->hotplug_limit >> KMM_PAGE_SHIFT > KMM_PAGE_PFN_LIMIT) {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: hotplug_limit 0x%llx above the %llu TiB frame limit",
                 (unsigned long long)cfg->hotplug_limit,
                 (unsigned long long)((KMM_PAGE_PFN_LIMIT << KMM_PAGE_SHIFT) >> 40));
        return false;
    }
    /* Two comparisons, not a sum: the sum of two huge counts could wrap. */
    if (cfg->region_count > KMM_MAX_REGIONS ||
        cfg->reserved_count > KMM_MAX_REGIONS - cfg->region_count) {
        kmm_logf(p, KMM_LOG_ERR, "kmm_init: %zu regions and %zu reserved ranges, at most %u in all",
                 cfg->region_count, cfg->reserved_count, KMM_MAX_REGIONS);
        return false;
    }
    return list_is_valid(p, cfg->regions, cfg->region_count, "region") &&
           list_is_valid(p, cfg->reserved, cfg->reserved_count, "reserved range") &&
           reservations_reserve(p, cfg->reserved, cfg->reserved_count);
}

/* Finds where the metadata block (instance and frame database) goes: the
 * end of the highest usable range above KMM_META_MIN_ADDR with room for size
 * bytes. High memory first keeps the DMA zones for devices. Returns false if
 * no range is large enough. */
KMM_INIT static bool place_metadata(const struct kmm_memmap_input *in, uint64_t size,
                                    uint64_t *where)
{
    uint64_t cursor = 0;
    struct kmm_region r;
    bool found = false;
    while (kmm_memmap_next(in, &cursor, &r)) {
        if (r.type != KMM_MEM_USABLE)
            continue;
        uint64_t start = r.base < KMM_META_MIN_ADDR ? KMM_META_MIN_ADDR : r.base;
        uint64_t end = r.base + r.length;
        if (end > start && end - start >= size) {
            *where = end - size;
            found = true;
        }
    }
    return found;
}

/* Resolves the map into the instance's (pmm/map.h) and marks the
 * instance's own pages as KMM_MEM_KMM_META by splitting the usable range
 * that ends with them. The regions and reservations together number at
 * most KMM_MAX_REGIONS (config_is_valid), so the resolver yields at most
 * KMM_MAX_MAP_RANGES - 1 ranges (kmm/memmap.h) and the split has room. */
KMM_INIT static void build_map(struct kmm *k, const struct kmm_memmap_input *in)
{
    uint64_t cursor = 0;
    struct kmm_region r;
    while (kmm_memmap_next(in, &cursor, &r)) {
        bool holds_meta = r.type == KMM_MEM_USABLE &&
                          r.base + r.length == k->meta_base + k->meta_size &&
                          k->meta_base >= r.base;
        if (holds_meta) {
            if (k->meta_base > r.base)
                map_append(k, (struct kmm_region){r.base, k->meta_base - r.base, KMM_MEM_USABLE});
            r = (struct kmm_region){k->meta_base, k->meta_size, KMM_MEM_KMM_META};
        }
        map_append(k, r);
    }
}

int kmm_init(const struct kmm_config *cfg, struct kmm **out)
{
    struct kmm_port *p = cfg ? cfg->port : NULL;
    if (!cfg || !out || !config_is_valid(cfg, p)) {
        if (!cfg || !out)
            kmm_logf(p, KMM_LOG_ERR, "kmm_init: NULL %s", cfg ? "out" : "config");
        return KMM_EINVAL;
    }
    struct kmm_memmap_input in = {cfg->regions, cfg->region_count, cfg->reserved,
                                  cfg->reserved_count};
    struct pmm_layout lay;
    pmm_plan(&in, cfg->hotplug_limit, &lay);
    uint64_t instance_bytes = kmm_align_up(sizeof(struct kmm), 64);
    uint64_t size = kmm_align_up(instance_bytes + lay.bytes, KMM_PAGE_SIZE);
    uint64_t where;
    uint64_t vm_pages = vmm_init_pages();
    if (lay.usable_pages < (size >> KMM_PAGE_SHIFT) + vm_pages) {
        kmm_logf(p, KMM_LOG_ERR,
                 "kmm_init: %llu usable pages cannot hold %llu KiB of metadata and the %llu "
                 "pages of the kernel address space",
                 (unsigned long long)lay.usable_pages, (unsigned long long)(size >> 10),
                 (unsigned long long)vm_pages);
        return KMM_ENOMEM;
    }
    if (!place_metadata(&in, size, &where)) {
        kmm_logf(p, KMM_LOG_ERR,
                 "kmm_init: no usable range above 1 MiB holds the %llu KiB of metadata",
                 (unsigned long long)(size >> 10));
        return KMM_ENOMEM;
    }

    /* Nothing below can fail. */
    uintptr_t direct_map = kmm_port_direct_map(p);
    struct kmm *k = (struct kmm *)(direct_map + (uintptr_t)where);
    __builtin_memset(k, 0, sizeof(*k));
    k->port = p;
    k->direct_map = direct_map;
    k->cpu_count = cfg->cpu_count;
    k->meta_base = where;
    k->meta_size = size;
    kmm_misuse_init(&k->misuse);
    kmm_events_init(&k->events);
    build_map(k, &in);
    pmm_setup(k, &lay, (char *)k + instance_bytes);
    pmm_reclaim_init(&k->pmm);
    vmm_init(k, cfg->paging_levels ? cfg->paging_levels : 4);
    kva_init(k, cfg);
    heap_init(k);
    if (lay.clamped)
        kmm_logf(p, KMM_LOG_WARN, "kmm_init: usable memory above %llu TiB is left unmanaged",
                 (unsigned long long)((KMM_PAGE_PFN_LIMIT << KMM_PAGE_SHIFT) >> 40));
    k->canary = KMM_INSTANCE_CANARY;
    uint64_t deferred = atomic_load_explicit(&k->pmm.grow.deferred_total, memory_order_relaxed);
    kmm_logf(p, KMM_LOG_INFO,
             "kmm %s: %llu pages managed, %llu deferred, %llu KiB of metadata at 0x%llx",
             kmm_version(), (unsigned long long)k->pmm.managed_pages, (unsigned long long)deferred,
             (unsigned long long)(size >> 10), (unsigned long long)where);
    *out = k;
    return KMM_OK;
}

int kmm_fini(struct kmm *k)
{
    if (!k)
        return KMM_OK;
    if (k->canary != KMM_INSTANCE_CANARY)
        return KMM_ESTATE;
    k->canary = 0;
    return KMM_OK;
}

struct kmm_port *kmm_port_of(const struct kmm *k)
{
    return k->port;
}
