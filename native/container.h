/* A container around a group's command: its namespaces, root file system,
 * mounts, devices, masked and read-only paths, and uid range. The set-up
 * runs in C between fork and exec (container.c), driven only by this data:
 * Python fills it, from `governor run --rootfs` options
 * (governor/container/) or from an OCI bundle's config.json
 * (governor/oci/), and checks every path and name before. */
#ifndef GOV_CONTAINER_H
#define GOV_CONTAINER_H

#include <stdint.h>

/* One mount beneath the rootfs, made in list order. */
struct gov_mount {
    const char *dst;        /* absolute path inside */
    const char *src;        /* binds: a host path; else the file system's source */
    const char *type;       /* NULL: a bind mount (flags has MS_BIND) */
    unsigned long flags;    /* MS_*; a bind with more than MS_BIND|MS_REC is remounted */
    const char *data;       /* file system options, or NULL */
};

/* A device node to make beneath the rootfs (mknod, then chown). */
struct gov_device {
    const char *path;       /* absolute path inside */
    unsigned int mode;      /* S_IFCHR, S_IFBLK or S_IFIFO | permission bits */
    unsigned int major, minor;
    unsigned int uid, gid;
};

/* A line of uid_map or gid_map. */
struct gov_idmap {
    unsigned int inside, outside, count;
};

/* Namespaces, by their index in gov_container.ns_path. */
enum {
    GOV_NS_PID, GOV_NS_NET, GOV_NS_IPC, GOV_NS_UTS, GOV_NS_MNT, GOV_NS_USER, GOV_NS_CGROUP,
    GOV_NS_N
};

struct gov_container {
    const char *rootfs;              /* absolute host path, symlinks resolved; without a
                                        mount namespace (new or joined) only a chroot */
    unsigned long rootfs_flags;      /* remounted with: MS_RDONLY, MS_NOSUID, MS_NODEV */
    const char *hostname;            /* NULL: leave it */
    int new_ns;                      /* CLONE_NEW* to create; CLONE_NEWUSER: the command's */
    const char *ns_path[GOV_NS_N];   /* namespaces to join (/proc/PID/ns/net...), or NULL */
    int nmounts;
    const struct gov_mount *mounts;
    int default_devices;             /* /dev/null, zero, full, random, urandom, tty (bound
                                        from the host) and /dev/ptmx, fd, stdin... links */
    int ndevices;
    const struct gov_device *devices;
    int nsysctl;                     /* "net/ipv4/ip_forward" = "1": under /proc/sys */
    const char *const *sysctl_key;
    const char *const *sysctl_value;
    int nreadonly;                   /* paths bound read-only onto themselves */
    const char *const *readonly;
    int nmasked;                     /* directories: an empty read-only tmpfs; files: /dev/null */
    const char *const *masked;
    int init_joins_user_ns;          /* the init enters the command's user namespace once it
                                        is mapped (OCI: the container's pid is in it) */
    int nuid_map, ngid_map;          /* the command's new user namespace */
    const struct gov_idmap *uid_map;
    const struct gov_idmap *gid_map;
};

/* Where a container's set-up failed (gov_spawn_res.fail_step; for mounts,
 * devices, sysctls, read-only and masked paths fail_index says which). */
enum {
    GOV_STEP_NONE,
    GOV_STEP_HOSTNAME,
    GOV_STEP_ROOTFS,
    GOV_STEP_MOUNT,
    GOV_STEP_DEV,
    GOV_STEP_DEVICE,
    GOV_STEP_SYSCTL,
    GOV_STEP_READONLY_PATH,
    GOV_STEP_MASKED_PATH,
    GOV_STEP_READ_ONLY,
    GOV_STEP_PIVOT_ROOT,
    GOV_STEP_LOOPBACK,
    GOV_STEP_JOIN_NS,
    GOV_STEP_UID_MAP,
    GOV_STEP_SETUID,
    GOV_STEP_CAPS,
    GOV_STEP_RLIMIT,
    GOV_STEP_OOM_SCORE,
    GOV_STEP_CONSOLE,
    GOV_STEP_CWD,
    GOV_STEP_FIND_PROGRAM,
};

/* "mount", "pivot_root", ...: what a step does, for error messages. */
const char *gov_container_step_name(int step);

#endif
