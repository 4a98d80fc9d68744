/* Container set-up, between fork and exec, driven by struct gov_container
 * and struct gov_process (the same code for `governor run --rootfs` and OCI
 * bundles). Only system calls and stack buffers: no malloc, no stdio
 * streams (we are a fork of a threaded Python process). Mount targets are
 * opened beneath the rootfs without following symlinks, so a symlink the
 * tenant left in its rootfs (say /data -> /etc) cannot turn a mount into
 * one over the host's files. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/resource.h>
#include <linux/capability.h>
#include <sched.h>
#include <unistd.h>

#include "container_child.h"
#include "procfs.h"
#include "spawn.h"

static const char *const step_names[] = {
    [GOV_STEP_NONE] = "set-up",
    [GOV_STEP_HOSTNAME] = "sethostname",
    [GOV_STEP_ROOTFS] = "bind the rootfs",
    [GOV_STEP_MOUNT] = "mount",
    [GOV_STEP_DEV] = "populate /dev",
    [GOV_STEP_DEVICE] = "make a device",
    [GOV_STEP_SYSCTL] = "write a sysctl",
    [GOV_STEP_READONLY_PATH] = "make a path read-only",
    [GOV_STEP_MASKED_PATH] = "mask a path",
    [GOV_STEP_READ_ONLY] = "remount the rootfs",
    [GOV_STEP_PIVOT_ROOT] = "pivot_root",
    [GOV_STEP_LOOPBACK] = "bring loopback up",
    [GOV_STEP_JOIN_NS] = "join a namespace",
    [GOV_STEP_UID_MAP] = "write uid_map/gid_map",
    [GOV_STEP_SETUID] = "set the user",
    [GOV_STEP_CAPS] = "set the capabilities",
    [GOV_STEP_RLIMIT] = "set an rlimit",
    [GOV_STEP_OOM_SCORE] = "set oom_score_adj",
    [GOV_STEP_CONSOLE] = "set up the console",
    [GOV_STEP_CWD] = "change to the working directory",
    [GOV_STEP_FIND_PROGRAM] = "find the program",
};
const char *gov_container_step_name(int step)
{
    if (step < 0 || step >= (int)(sizeof step_names / sizeof step_names[0]))
        return "set-up";
    return step_names[step];
}

/* Opens (creating directories as needed) the directory path, relative to
 * dirfd, refusing symlinks on the way. An O_PATH fd, or -errno. */
static int open_dir_beneath(int dirfd, const char *path)
{
    char comp[256];
    int fd = dup(dirfd);
    if (fd < 0)
        return -errno;
    while (*path) {
        while (*path == '/')
            path++;
        size_t n = strcspn(path, "/");
        if (n == 0)
            break;
        if (n >= sizeof comp || (n == 2 && path[0] == '.' && path[1] == '.')) {
            close(fd);
            return -EINVAL;
        }
        memcpy(comp, path, n);
        comp[n] = '\0';
        path += n;
        if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
            int err = errno;
            close(fd);
            return -err;
        }
        int next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        close(fd);
        if (next < 0)
            return -err;
        fd = next;
    }
    return fd;
}

/* mount(2) onto what fd names (through /proc/self/fd: the mount lands on
 * the very directory that was opened). */
static int mount_on(int fd, const char *src, const char *type, unsigned long flags,
                    const char *data)
{
    char target[64];
    snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
    return mount(src, target, type, flags, data) < 0 ? -errno : 0;
}


/* Opens the existing file or directory at path beneath root (O_PATH, no
 * symlink followed on the way or at the end), creating nothing; -errno. */
static int open_beneath(int root, const char *path)
{
    const char *slash = strrchr(path, '/');
    char parent[4096];
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof parent)
        return -ENAMETOOLONG;
    memcpy(parent, path, n);
    parent[n] = '\0';
    const char *name = slash ? slash + 1 : path;
    int dir = dup(root);
    if (dir < 0)
        return -errno;
    char *p = parent;
    while (*p) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0)
            break;
        char comp[256];
        if (len >= sizeof comp || (len == 2 && p[0] == '.' && p[1] == '.')) {
            close(dir);
            return -EINVAL;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        p += len;
        int next = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        close(dir);
        if (next < 0)
            return -err;
        dir = next;
    }
    int fd = *name ? openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : dup(dir);
    int err = errno;
    close(dir);
    return fd < 0 ? -err : fd;
}

/* The mount point for a mount of src at path beneath root: a directory, or
 * an empty file when a file is bound (created if missing, with its
 * parents). An O_PATH fd, or -errno. */
static int mount_point(int root, const char *path, const char *bind_src)
{
    struct stat st;
    if (!bind_src || stat(bind_src, &st) < 0 || S_ISDIR(st.st_mode))
        return open_dir_beneath(root, path);
    const char *slash = strrchr(path, '/');
    char parent[4096];
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof parent || !slash[1])
        return -EINVAL;
    memcpy(parent, path, n);
    parent[n] = '\0';
    int dir = open_dir_beneath(root, parent);
    if (dir < 0)
        return dir;
    int f = openat(dir, slash + 1, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f >= 0)
        close(f);
    int fd = openat(dir, slash + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    close(dir);
    return fd < 0 ? -err : fd;
}

static int do_mount(int root, const struct gov_mount *m)
{
    int bind = (m->flags & MS_BIND) != 0;
    int fd = mount_point(root, m->dst, bind ? m->src : NULL);
    if (fd < 0)
        return fd;
    int rc = mount_on(fd, m->src, bind ? NULL : m->type, m->flags, m->data);
    /* A bind takes flags such as MS_RDONLY only from a remount. */
    const unsigned long plain = MS_BIND | MS_REC;
    if (rc == 0 && bind && (m->flags & ~plain)) {
        close(fd);
        fd = open_beneath(root, m->dst);
        rc = fd < 0 ? fd
                    : mount_on(fd, NULL, NULL, MS_REMOUNT | MS_BIND | (m->flags & ~MS_REC), NULL);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* The devices every container gets (bound from the host: that works in a
 * user namespace too), and /dev's usual links. Existing ones are kept. */
static int default_devices(int root)
{
    static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
    int dev = open_dir_beneath(root, "dev");
    if (dev < 0)
        return dev;
    int rc = 0;
    for (size_t i = 0; i < sizeof devices / sizeof devices[0] && rc == 0; i++) {
        char host[32];
        snprintf(host, sizeof host, "/dev/%s", devices[i]);
        int f = openat(dev, devices[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        if (f < 0) {
            rc = errno == EEXIST ? 0 : -errno;
            continue;
        }
        close(f);
        f = openat(dev, devices[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (f < 0) {
            rc = -errno;
            break;
        }
        rc = mount_on(f, host, NULL, MS_BIND, NULL);
        close(f);
    }
    static const char *const links[][2] = {
        {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0] && rc == 0; i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0 && errno != EEXIST)
            rc = -errno;
    close(dev);
    return rc;
}

static int make_device(int root, const struct gov_device *d)
{
    const char *slash = strrchr(d->path, '/');
    char parent[4096];
    size_t n = slash ? (size_t)(slash - d->path) : 0;
    if (!slash || n >= sizeof parent || !slash[1])
        return -EINVAL;
    memcpy(parent, d->path, n);
    parent[n] = '\0';
    int dir = open_dir_beneath(root, parent);
    if (dir < 0)
        return dir;
    int rc = 0;
    unlinkat(dir, slash + 1, 0); /* a default device of that name is replaced */
    if (mknodat(dir, slash + 1, d->mode, makedev(d->major, d->minor)) < 0 ||
        fchownat(dir, slash + 1, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
        fchmodat(dir, slash + 1, d->mode & 07777, 0) < 0)
        rc = -errno;
    close(dir);
    return rc;
}

/* Writes value to /proc/sys/KEY of the container's /proc (mounted beneath
 * root): the namespaces that count are the caller's, the init's. */
static int write_sysctl(int root, const char *key, const char *value)
{
    char path[512];
    if (snprintf(path, sizeof path, "proc/sys/%s", key) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open_beneath(root, path);
    if (fd < 0)
        return fd;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int w = open(proc, O_WRONLY | O_CLOEXEC);
    int err = errno;
    close(fd);
    if (w < 0)
        return -err;
    ssize_t len = (ssize_t)strlen(value);
    int rc = write(w, value, (size_t)len) == len ? 0 : -errno;
    close(w);
    return rc;
}

/* runc's readonlyPaths: the path bound onto itself, read-only. */
static int readonly_path(int root, const char *path)
{
    int fd = open_beneath(root, path);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    int rc = mount_on(fd, self, NULL, MS_BIND | MS_REC, NULL);
    close(fd);
    if (rc < 0)
        return rc;
    if ((fd = open_beneath(root, path)) < 0)
        return fd;
    rc = mount_on(fd, NULL, NULL,
                  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    close(fd);
    return rc;
}

/* runc's maskedPaths: a directory gets an empty read-only tmpfs, anything
 * else /dev/null bound over it (reads find nothing, writes fail). */
static int masked_path(int root, const char *path)
{
    int fd = open_beneath(root, path);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0)
        rc = S_ISDIR(st.st_mode)
                 ? mount_on(fd, "tmpfs", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                            "size=0,mode=555")
                 : mount_on(fd, "/dev/null", NULL, MS_BIND, NULL);
    close(fd);
    return rc;
}

static int loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        rc = -errno;
    ifr.ifr_flags |= IFF_UP;
    if (rc == 0 && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        rc = -errno;
    close(s);
    return rc;
}

#define STEP(s, expr)          \
    do {                       \
        *step = (s);           \
        if ((rc = (expr)) < 0) \
            goto out;          \
    } while (0)

static int sys_rc(int r)
{
    return r < 0 ? -errno : 0;
}

static const int ns_flag[GOV_NS_N] = {
    [GOV_NS_PID] = CLONE_NEWPID, [GOV_NS_NET] = CLONE_NEWNET, [GOV_NS_IPC] = CLONE_NEWIPC,
    [GOV_NS_UTS] = CLONE_NEWUTS, [GOV_NS_MNT] = CLONE_NEWNS, [GOV_NS_USER] = CLONE_NEWUSER,
    [GOV_NS_CGROUP] = CLONE_NEWCGROUP,
};

int container_enter(const struct gov_container *c, const int *ns_fd, int *step, int *index)
{
    int rc = 0, root = -1;
    *index = -1;
    /* pid was joined before the clone, user is the command's. */
    for (int i = 0; i < GOV_NS_N; i++)
        if (i != GOV_NS_PID && i != GOV_NS_USER && ns_fd[i] >= 0)
            STEP(GOV_STEP_JOIN_NS, sys_rc(setns(ns_fd[i], ns_flag[i])));
    if (!c->rootfs) { /* joining a running container: its root is the mount namespace's */
        STEP(GOV_STEP_JOIN_NS, sys_rc(chdir("/")));
        goto out;
    }
    if (c->hostname)
        STEP(GOV_STEP_HOSTNAME, sys_rc(sethostname(c->hostname, strlen(c->hostname))));
    if (!(c->new_ns & CLONE_NEWNS) && ns_fd[GOV_NS_MNT] < 0) {
        /* The caller's mount namespace: nothing may be mounted in it. */
        STEP(GOV_STEP_PIVOT_ROOT, sys_rc(chroot(c->rootfs)));
        STEP(GOV_STEP_PIVOT_ROOT, sys_rc(chdir("/")));
        goto out;
    }
    /* Nothing we mount may propagate back to the host. */
    STEP(GOV_STEP_ROOTFS, sys_rc(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)));
    STEP(GOV_STEP_ROOTFS, sys_rc(mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL)));
    root = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    STEP(GOV_STEP_ROOTFS, sys_rc(root));
    for (*index = 0; *index < c->nmounts; ++*index)
        STEP(GOV_STEP_MOUNT, do_mount(root, &c->mounts[*index]));
    *index = -1;
    if (c->default_devices)
        STEP(GOV_STEP_DEV, default_devices(root));
    for (*index = 0; *index < c->ndevices; ++*index)
        STEP(GOV_STEP_DEVICE, make_device(root, &c->devices[*index]));
    for (*index = 0; *index < c->nsysctl; ++*index)
        STEP(GOV_STEP_SYSCTL, write_sysctl(root, c->sysctl_key[*index], c->sysctl_value[*index]));
    for (*index = 0; *index < c->nreadonly; ++*index)
        STEP(GOV_STEP_READONLY_PATH, readonly_path(root, c->readonly[*index]));
    for (*index = 0; *index < c->nmasked; ++*index)
        STEP(GOV_STEP_MASKED_PATH, masked_path(root, c->masked[*index]));
    *index = -1;
    if (c->rootfs_flags)
        STEP(GOV_STEP_READ_ONLY, mount_on(root, NULL, NULL,
                                          MS_REMOUNT | MS_BIND | c->rootfs_flags, NULL));
    /* runc's trick: with the new root as cwd, pivot_root(".", ".") stacks
     * the old root on top of it; detaching "." then removes the old one. */
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc(fchdir(root)));
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc((int)syscall(SYS_pivot_root, ".", ".")));
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc(umount2(".", MNT_DETACH)));
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc(chdir("/")));
    if (c->new_ns & CLONE_NEWNET)
        STEP(GOV_STEP_LOOPBACK, loopback_up());
    *step = GOV_STEP_NONE;
out:
    if (root >= 0)
        close(root);
    return rc;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = errno;
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -(n < 0 ? err : EIO);
}

static int write_map(int pid, const char *which, const struct gov_idmap *map, int n)
{
    char path[64], text[1024];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(text + len, sizeof text - len, "%u %u %u\n", map[i].inside,
                         map[i].outside, map[i].count);
        if (w < 0 || (size_t)w >= sizeof text - len)
            return -E2BIG;
        len += (size_t)w;
    }
    snprintf(path, sizeof path, "/proc/%d/%s", pid, which);
    return write_file(path, text);
}

int container_map_ids(int pid, const struct gov_container *c)
{
    int rc = write_map(pid, "uid_map", c->uid_map, c->nuid_map);
    return rc < 0 ? rc : write_map(pid, "gid_map", c->gid_map, c->ngid_map);
}

/* Raw system calls: glibc's setresuid() and friends would first try to
 * reach every thread of the Python process we were cloned from (its setxid
 * broadcast), and hang on one that was being created at the time. */
static int set_ids(unsigned int uid, unsigned int gid, int ngroups, const unsigned int *groups)
{
    if (syscall(SYS_setgroups, ngroups, groups) < 0 || syscall(SYS_setresgid, gid, gid, gid) < 0 ||
        syscall(SYS_setresuid, uid, uid, uid) < 0)
        return -errno;
    return 0;
}

int container_become(const struct gov_process *p, int in_user_ns, int *step)
{
    int rc = 0;
    /* Root of a new user namespace has every capability there, but is
     * uid 65534 until it takes uid 0. */
    if (in_user_ns)
        STEP(GOV_STEP_SETUID, set_ids(0, 0, 0, NULL));
    if (!p)
        goto out;
    if (p->set_oom) {
        char text[16];
        snprintf(text, sizeof text, "%d", p->oom_score_adj);
        STEP(GOV_STEP_OOM_SCORE, write_file("/proc/self/oom_score_adj", text));
    }
    for (int i = 0; i < p->nrlimits; i++) {
        struct rlimit r = {p->rlimits[i].soft, p->rlimits[i].hard};
        STEP(GOV_STEP_RLIMIT, sys_rc(setrlimit(p->rlimits[i].resource, &r)));
    }
    *step = GOV_STEP_NONE;
out:
    return rc;
}

int container_drop_privileges(const struct gov_process *p, int *step)
{
    int rc = 0;
    if (!p)
        return 0;
    if (p->drop_bounding)
        for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
            if (!(p->cap_bounding & (1ULL << cap)))
                STEP(GOV_STEP_CAPS, sys_rc(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)));
    if (p->set_ids) {
        /* Keep the permitted set across the change of uid; capset below
         * decides what remains. */
        STEP(GOV_STEP_SETUID, sys_rc(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)));
        STEP(GOV_STEP_SETUID, set_ids(p->uid, p->gid, p->ngroups, p->groups));
        STEP(GOV_STEP_SETUID, sys_rc(prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)));
    }
    if (p->set_caps) {
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2] = {
            {(uint32_t)p->cap_effective, (uint32_t)p->cap_permitted,
             (uint32_t)p->cap_inheritable},
            {(uint32_t)(p->cap_effective >> 32), (uint32_t)(p->cap_permitted >> 32),
             (uint32_t)(p->cap_inheritable >> 32)},
        };
        STEP(GOV_STEP_CAPS, sys_rc((int)syscall(SYS_capset, &h, d)));
        /* The kernel raises an ambient capability only if it is permitted
         * and inheritable; runc skips the others (with a warning), so do we:
         * `runc spec` lists ambient capabilities that are not inheritable. */
        for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
            if (p->cap_ambient & (1ULL << cap))
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
    }
    *step = GOV_STEP_NONE;
out:
    return rc;
}

void container_name_init(void)
{
    static const char name[] = "governor-init";
    prctl(PR_SET_NAME, name, 0, 0, 0);
    /* /proc/1/cmdline reads the argument area, our private copy of the
     * supervisor's: overwrite it (PR_SET_MM_ARG_START would need
     * CAP_SYS_RESOURCE). A last byte that is not NUL makes the kernel stop
     * at the first NUL, as for setproctitle(3). */
    int64_t start = gov_task_stat(getpid(), 48), end = gov_task_stat(getpid(), 49);
    if (start <= 0 || end <= start)
        return;
    char *area = (char *)start;
    size_t len = end - start, n = sizeof name < len ? sizeof name : len - 1;
    memset(area, 0, len);
    memcpy(area, name, n);
    area[n] = '\0';
    area[len - 1] = ' ';
}
