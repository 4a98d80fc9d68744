/* Container set-up, between fork and exec. Only system calls and
 * stack buffers: no malloc, no stdio streams (we are a fork of a threaded
 * Python process). Mount targets are opened beneath the rootfs without
 * following symlinks, so a symlink the tenant left in its rootfs (say
 * /data -> /etc) cannot turn a mount into one over the host's files. */
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
#include <unistd.h>

#include "container_child.h"
#include "procfs.h"

static const char *const step_names[] = {
    [GOV_STEP_NONE] = "set-up",
    [GOV_STEP_HOSTNAME] = "sethostname",
    [GOV_STEP_ROOTFS] = "bind the rootfs",
    [GOV_STEP_PROC] = "mount /proc",
    [GOV_STEP_DEV] = "populate /dev",
    [GOV_STEP_TMP] = "mount /tmp",
    [GOV_STEP_VOLUME] = "bind a volume",
    [GOV_STEP_READ_ONLY] = "remount the rootfs",
    [GOV_STEP_PIVOT_ROOT] = "pivot_root",
    [GOV_STEP_LOOPBACK] = "bring loopback up",
    [GOV_STEP_UID_MAP] = "write uid_map/gid_map",
    [GOV_STEP_SETUID] = "become container root",
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

/* mount beneath root at path (a directory, created if missing). */
static int mount_at(int root, const char *path, const char *src, const char *type,
                    unsigned long flags, const char *data)
{
    int fd = open_dir_beneath(root, path);
    if (fd < 0)
        return fd;
    int rc = mount_on(fd, src, type, flags, data);
    close(fd);
    return rc;
}

/* A tmpfs /dev with the host's harmless devices bound in, and its own
 * devpts instance, so the container sees no other terminal of the host. */
static int populate_dev(int root)
{
    static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
    int rc = mount_at(root, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC,
                      "mode=755,size=65536");
    if (rc < 0)
        return rc;
    int dev = open_dir_beneath(root, "dev");
    if (dev < 0)
        return dev;
    for (size_t i = 0; i < sizeof devices / sizeof devices[0] && rc == 0; i++) {
        char host[32];
        snprintf(host, sizeof host, "/dev/%s", devices[i]);
        int f = openat(dev, devices[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        if (f < 0) {
            rc = -errno;
            break;
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
    if (rc == 0)
        rc = mount_at(dev, "pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                      "newinstance,ptmxmode=0666,mode=0620");
    static const char *const links[][2] = {
        {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0] && rc == 0; i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0)
            rc = -errno;
    close(dev);
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

int container_enter(const struct gov_container *c, int *step)
{
    const unsigned long hard = MS_NOSUID | MS_NODEV;
    int rc = 0, root = -1;
    STEP(GOV_STEP_HOSTNAME, sys_rc(sethostname(c->hostname, strlen(c->hostname))));
    /* Nothing we mount may propagate back to the host. */
    STEP(GOV_STEP_ROOTFS, sys_rc(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)));
    STEP(GOV_STEP_ROOTFS, sys_rc(mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL)));
    root = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    STEP(GOV_STEP_ROOTFS, sys_rc(root));
    STEP(GOV_STEP_PROC, mount_at(root, "proc", "proc", "proc", hard | MS_NOEXEC, NULL));
    STEP(GOV_STEP_DEV, populate_dev(root));
    char tmp_opts[64];
    snprintf(tmp_opts, sizeof tmp_opts, "mode=1777,size=%lld", c->tmp_size);
    STEP(GOV_STEP_TMP, mount_at(root, "tmp", "tmpfs", "tmpfs", hard, tmp_opts));
    for (int i = 0; i < c->nvolumes; i++)
        STEP(GOV_STEP_VOLUME, mount_at(root, c->volume_dst[i], c->volume_src[i], NULL,
                                       MS_BIND | MS_REC, NULL));
    /* Device nodes shipped in a rootfs or a volume must not open host
     * devices, and set-uid bits mean nothing here. A bind mount takes its
     * flags from a remount: one per bind. */
    for (int i = 0; i < c->nvolumes; i++) {
        int fd = open_dir_beneath(root, c->volume_dst[i]);
        STEP(GOV_STEP_VOLUME, fd);
        rc = mount_on(fd, NULL, NULL, MS_REMOUNT | MS_BIND | hard, NULL);
        close(fd);
        STEP(GOV_STEP_VOLUME, rc);
    }
    STEP(GOV_STEP_READ_ONLY, mount_on(root, NULL, NULL, MS_REMOUNT | MS_BIND | hard |
                                      (c->read_only ? MS_RDONLY : 0), NULL));
    /* runc's trick: with the new root as cwd, pivot_root(".", ".") stacks
     * the old root on top of it; detaching "." then removes the old one. */
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc(fchdir(root)));
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc((int)syscall(SYS_pivot_root, ".", ".")));
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc(umount2(".", MNT_DETACH)));
    STEP(GOV_STEP_PIVOT_ROOT, sys_rc(chdir("/")));
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

int container_map_ids(int pid, unsigned int uid_base)
{
    char path[64], map[64];
    snprintf(map, sizeof map, "0 %u 65536\n", uid_base);
    snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
    int rc = write_file(path, map);
    if (rc == 0) {
        snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
        rc = write_file(path, map);
    }
    return rc;
}

/* Raw system calls: glibc's setresuid() and friends would first try to
 * reach every thread of the Python process we were cloned from (its setxid
 * broadcast), and hang on one that was being created at the time. */
int container_become_root(void)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
        syscall(SYS_setresuid, 0, 0, 0) < 0)
        return -errno;
    return 0;
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
