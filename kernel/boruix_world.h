/*
 * boruix_world.h - the Boruix interface over the demo kernel's own instance
 * (kernel/boruix_world.c; compat/world.h).
 */
#ifndef KMM_KERNEL_BORUIX_WORLD_H
#define KMM_KERNEL_BORUIX_WORLD_H

/*
 * kernel_boruix_adopt - make kernel_kmm the instance Boruix's rust_* calls
 * work on (kmm_boruix_adopt), with Boruix's heap window at
 * 0xFFFFFFFF90000000 (layout.h). After the takeover, once. Returns KMM_OK
 * or kmm_boruix_adopt's error.
 */
int kernel_boruix_adopt(void);

#endif /* KMM_KERNEL_BORUIX_WORLD_H */
