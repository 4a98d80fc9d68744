/* A container around a group's command: its namespaces, root file system
 * and uid range. The set-up runs in C between fork and exec (container.c);
 * Python checks every path and name before (governor/container.py). */
#ifndef GOV_CONTAINER_H
#define GOV_CONTAINER_H

struct gov_container {
    const char *rootfs;              /* absolute host path, symlinks resolved */
    const char *hostname;
    int read_only;                   /* rootfs mounted read-only */
    int nvolumes;
    const char *const *volume_src;   /* host directories */
    const char *const *volume_dst;   /* absolute paths inside, without "." or ".." */
    long long tmp_size;              /* bytes of the tmpfs at /tmp */
    unsigned int uid_base;           /* container uid/gid 0 = host uid_base; 65536 ids */
};

/* Where a container's set-up failed (gov_spawn_res.fail_step). */
enum {
    GOV_STEP_NONE,
    GOV_STEP_HOSTNAME,
    GOV_STEP_ROOTFS,
    GOV_STEP_PROC,
    GOV_STEP_DEV,
    GOV_STEP_TMP,
    GOV_STEP_VOLUME,
    GOV_STEP_READ_ONLY,
    GOV_STEP_PIVOT_ROOT,
    GOV_STEP_LOOPBACK,
    GOV_STEP_UID_MAP,
    GOV_STEP_SETUID,
};

/* "mount /proc", ...: what a step does, for error messages. */
const char *gov_container_step_name(int step);

#endif
