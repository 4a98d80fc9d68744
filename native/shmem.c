#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "shmem.h"

#define HANDLE_BYTES 128

int gov_shmem_is_memory(int fd, const struct stat *st)
{
    struct statfs fs;
    if (!S_ISREG(st->st_mode) || fstatfs(fd, &fs) < 0)
        return 0;
    return fs.f_type == TMPFS_MAGIC || fs.f_type == HUGETLBFS_MAGIC;
}

/* The device as /proc/PID/maps writes it (procfs.h's objects). */
static uint64_t maps_dev(dev_t dev)
{
    return ((uint64_t)major(dev) << 32) | minor(dev);
}

static int64_t file_bytes(const struct stat *st)
{
    int64_t blocks = (int64_t)st->st_blocks * 512;
    return st->st_size > blocks ? st->st_size : blocks;
}

/* Our own memfd: an fd on the file system of every memfd (and SysV
 * segment), for open_by_handle_at. -1 if it cannot be made. */
static int memfd_anchor(void)
{
    static int fd = -2;
    if (fd == -2)
        fd = memfd_create("governor-anchor", MFD_CLOEXEC);
    return fd;
}

/* The mount point of mount `mnt_id` as thread tid sees it (from its
 * mountinfo), opened as a directory through its root; -1 if none. */
static int open_mount(int tid, int mnt_id)
{
    char path[4096 + 64], line[4096 + 256], point[4096];
    snprintf(path, sizeof path, "/proc/%d/mountinfo", tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        int id;
        found = sscanf(line, "%d %*d %*s %*s %4095s", &id, point) == 2 && id == mnt_id;
    }
    fclose(f);
    if (!found || strchr(point, '\\'))
        return -1; /* escaped characters: not looked for, the file keeps its size */
    snprintf(path, sizeof path, "/proc/%d/root", tid);
    int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -1;
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS};
    int fd = (int)syscall(SYS_openat2, root, point, &how, sizeof how);
    close(root);
    return fd;
}

/* The index of an anchor on the file system of st, or -1. */
static int anchor_for(struct gov_shmem *s, int tid, int mnt_id, const struct stat *st)
{
    for (int i = 0; i < s->nanchor; i++)
        if (s->anchor[i].dev == (uint64_t)st->st_dev)
            return i;
    if (s->nanchor == GOV_SHMEM_ANCHORS)
        return -1;
    struct stat ast;
    int fd = memfd_anchor();
    if (fd < 0 || fstat(fd, &ast) < 0 || ast.st_dev != st->st_dev) {
        fd = open_mount(tid, mnt_id);
        /* A tenant may mount something else over its mount point. */
        if (fd < 0 || fstat(fd, &ast) < 0 || ast.st_dev != st->st_dev) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
    } else if ((fd = dup(fd)) < 0) {
        return -1;
    }
    s->anchor[s->nanchor].dev = (uint64_t)st->st_dev;
    s->anchor[s->nanchor].fd = fd;
    return s->nanchor++;
}

/* The files by (dev, ino): open addressing in slot[] (index + 1; 0: free),
 * twice as many slots as files can be, so a write finds its file at once
 * however many the group has. */
static unsigned slot_of(const struct gov_shmem *s, uint64_t dev, uint64_t ino)
{
    return (unsigned)(((ino ^ dev) * 0x9E3779B97F4A7C15ULL) >> 32) & (unsigned)(s->nslot - 1);
}

static void slot_put(struct gov_shmem *s, int i)
{
    if (!s->nslot)
        return; /* no table (out of memory): a file may be noted twice, an overcount */
    unsigned k = slot_of(s, s->f[i].dev, s->f[i].ino);
    while (s->slot[k])
        k = (k + 1) & (unsigned)(s->nslot - 1);
    s->slot[k] = i + 1;
}

static int rehash(struct gov_shmem *s, int nslot)
{
    int *slot = calloc((size_t)nslot, sizeof *slot);
    free(s->slot);
    s->slot = NULL;
    s->nslot = 0;
    if (!slot)
        return -ENOMEM;
    s->slot = slot;
    s->nslot = nslot;
    for (int i = 0; i < s->n; i++)
        slot_put(s, i);
    return 0;
}

static int find_file(const struct gov_shmem *s, uint64_t dev, uint64_t ino)
{
    for (unsigned k = s->nslot ? slot_of(s, dev, ino) : 0; s->nslot && s->slot[k];
         k = (k + 1) & (unsigned)(s->nslot - 1))
        if (s->f[s->slot[k] - 1].dev == dev && s->f[s->slot[k] - 1].ino == ino)
            return s->slot[k] - 1;
    return -1;
}

/* Notes the file `path` relative to fd ("": fd itself). */
static int note_at(struct gov_shmem *s, int tid, int fd, const char *path, const struct stat *st)
{
    if (find_file(s, maps_dev(st->st_dev), st->st_ino) >= 0)
        return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        struct gov_shmem_file *f = realloc(s->f, sizeof *f * (size_t)cap);
        if (!f)
            return -ENOMEM;
        s->f = f;
        s->cap = cap;
        rehash(s, 2 * cap);
    }
    struct gov_shmem_file *f = &s->f[s->n];
    *f = (struct gov_shmem_file){maps_dev(st->st_dev), st->st_ino, file_bytes(st), -1, NULL};
    int mnt_id;
    f->fh = malloc(sizeof *f->fh + HANDLE_BYTES);
    if (f->fh) {
        f->fh->handle_bytes = HANDLE_BYTES;
        if (name_to_handle_at(fd, path, f->fh, &mnt_id,
                              path[0] ? AT_SYMLINK_FOLLOW : AT_EMPTY_PATH) == 0)
            f->anchor = anchor_for(s, tid, mnt_id, st);
    }
    slot_put(s, s->n++); /* without a handle it keeps its size: failing closed */
    return f->anchor >= 0 ? 0 : -ENOENT;
}

int gov_shmem_note(struct gov_shmem *s, int tid, int fd, const struct stat *st)
{
    return note_at(s, tid, fd, "", st);
}

void gov_shmem_creator(struct gov_shmem *s, int tgid)
{
    for (int i = 0; i < s->ncreators; i++)
        if (s->creators[i] == tgid)
            return;
    if (s->ncreators == GOV_SHMEM_CREATORS)
        s->creators_full = 1;
    else
        s->creators[s->ncreators++] = tgid;
}

/* Looks again at each file: drops those that are gone. */
static void recount_files(struct gov_shmem *s)
{
    int kept = 0;
    for (int i = 0; i < s->n; i++) {
        struct gov_shmem_file *f = &s->f[i];
        int gone = 0;
        if (f->anchor >= 0) {
            int fd = open_by_handle_at(s->anchor[f->anchor].fd, f->fh, O_PATH | O_CLOEXEC);
            struct stat st;
            if (fd >= 0 && fstat(fd, &st) == 0)
                f->size = file_bytes(&st);
            gone = fd < 0 && errno == ESTALE;
            if (fd >= 0)
                close(fd);
        }
        if (gone)
            free(f->fh);
        else
            s->f[kept++] = *f;
    }
    s->n = kept;
    if (s->cap)
        rehash(s, 2 * s->cap);
}

static int created_here(const struct gov_shmem *s, int cpid)
{
    for (int i = 0; i < s->ncreators; i++)
        if (s->creators[i] == cpid)
            return 1;
    return 0;
}

/* Adds the SysV segments of the current IPC namespace that are the group's
 * (`all`: every one); their bytes, or -1 if it could not look. Objects are
 * keyed as /proc/PID/maps shows an attached segment: the shm file system's
 * device, the id as inode. */
static int64_t recount_sysv(const struct gov_shmem *s, int all, struct gov_shm_obj *objs, int *n,
                            int max)
{
    struct shm_info info;
    struct stat ast;
    int top = shmctl(0, SHM_INFO, (struct shmid_ds *)&info);
    int anchor = memfd_anchor();
    if (top < 0 || anchor < 0 || fstat(anchor, &ast) < 0)
        return -1;
    int64_t sum = 0;
    for (int i = 0; i <= top; i++) {
        struct shmid_ds ds;
        int id = shmctl(i, SHM_STAT_ANY, &ds);
        if (id < 0 || !(all || created_here(s, ds.shm_cpid)))
            continue;
        gov_shm_obj_add(objs, n, max, maps_dev(ast.st_dev), (uint64_t)id, (int64_t)ds.shm_segsz);
        sum += (int64_t)ds.shm_segsz;
    }
    return sum;
}

/* SysV segments of the IPC namespace of ipc_pid, entered for the count if it
 * is not ours (a container's): all of its segments are the group's. */
static int64_t recount_ns(const struct gov_shmem *s, int ipc_pid, struct gov_shm_obj *objs,
                          int *n, int max)
{
    char path[64];
    struct stat mine, theirs;
    snprintf(path, sizeof path, "/proc/%d/ns/ipc", ipc_pid);
    if (stat("/proc/thread-self/ns/ipc", &mine) < 0 || stat(path, &theirs) < 0)
        return -1;
    if (mine.st_ino == theirs.st_ino)
        return s->ncreators ? recount_sysv(s, s->creators_full, objs, n, max) : 0;
    int64_t sum = -1;
    int own = open("/proc/thread-self/ns/ipc", O_RDONLY | O_CLOEXEC);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (own >= 0 && ns >= 0 && setns(ns, CLONE_NEWIPC) == 0) {
        sum = recount_sysv(s, 1, objs, n, max);
        setns(own, CLONE_NEWIPC);
    }
    if (own >= 0)
        close(own);
    if (ns >= 0)
        close(ns);
    return sum;
}

/* Key of the SysV bytes of the last count, kept when a count cannot look. */
#define SYSV_KEPT_DEV (1ULL << 60)

void gov_shmem_recount(struct gov_shmem *s, int ipc_pid, struct gov_shm_obj *objs, int *n,
                       int max)
{
    recount_files(s);
    for (int i = 0; i < s->n; i++)
        gov_shm_obj_add(objs, n, max, s->f[i].dev, s->f[i].ino, s->f[i].size);
    int64_t sysv = ipc_pid > 0 ? recount_ns(s, ipc_pid, objs, n, max) : -1;
    if (sysv >= 0)
        s->sysv_bytes = sysv;
    else if (s->sysv_bytes > 0) /* fail closed: what it had at the last look */
        gov_shm_obj_add(objs, n, max, SYSV_KEPT_DEV, 0, s->sysv_bytes);
}

/* net.core.wmem_default or wmem_max (bytes), read once. */
static int64_t sysctl_bytes(int max)
{
    static int64_t cached[2];
    if (!cached[max]) {
        char buf[32];
        const char *key = max ? "wmem_max" : "wmem_default";
        char path[64];
        snprintf(path, sizeof path, "/proc/sys/net/core/%s", key);
        int n = gov_read_small(path, buf, sizeof buf);
        cached[max] = n > 0 ? atoll(buf) : 212992;
    }
    return cached[max];
}

int64_t gov_unix_sndbuf(int64_t want)
{
    if (want <= 0)
        want = sysctl_bytes(0);
    else if (want > sysctl_bytes(1))
        want = sysctl_bytes(1);
    return 2 * want; /* the kernel doubles it for its bookkeeping */
}

/* Object keys of pipes and sockets, apart from files' devices. */
#define PIPE_DEV (1ULL << 62)
#define SOCKET_DEV (1ULL << 61)

/* 1 if fd `fd` of process pid is open for writing (its fdinfo flags). */
static int writable(int pid, const char *fd)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%s", pid, fd);
    if (gov_read_small(path, buf, sizeof buf) < 0)
        return 0;
    const char *flags = strstr(buf, "flags:");
    return flags && (strtol(flags + 6, NULL, 8) & O_ACCMODE) != O_RDONLY;
}

/* A file in memory open for writing in a process of the group (`path`: its
 * /proc/PID/fd link) is noted as if the group had grown it: a write that
 * raced its classification (another thread put the file under the fd
 * number meanwhile) grew it uncharged, and a file the group was handed to
 * write holds memory as much. (Files it only reads are not its memory.) */
static void note_open_file(struct gov_shmem *s, int pid, const char *path, const char *fd)
{
    struct statfs fs;
    struct stat st;
    if (statfs(path, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == HUGETLBFS_MAGIC) &&
        stat(path, &st) == 0 && S_ISREG(st.st_mode) && writable(pid, fd))
        note_at(s, pid, AT_FDCWD, path, &st);
}

void gov_shmem_fds(struct gov_shmem *s, int pid, struct gov_shm_obj *objs, int *n, int max)
{
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *dir = opendir(path);
    if (!dir)
        return;
    int pidfd = -1;
    struct dirent *d;
    while ((d = readdir(dir))) {
        unsigned long long ino;
        snprintf(path, sizeof path, "/proc/%d/fd/%s", pid, d->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len <= 0)
            continue;
        link[len] = 0;
        if (link[0] == '/') {
            note_open_file(s, pid, path, d->d_name);
            continue;
        }
        if (sscanf(link, "pipe:[%llu]", &ino) == 1) {
            gov_shm_obj_add(objs, n, max, PIPE_DEV, ino, GOV_PIPE_BYTES);
            continue;
        }
        if (sscanf(link, "socket:[%llu]", &ino) != 1)
            continue;
        if (pidfd < 0 && (pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0)
            break;
        int fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(d->d_name), 0);
        int domain = 0, sndbuf = 0;
        socklen_t l1 = sizeof domain, l2 = sizeof sndbuf;
        if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l1) == 0 &&
            domain == AF_UNIX && getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l2) == 0)
            gov_shm_obj_add(objs, n, max, SOCKET_DEV, ino, sndbuf);
        if (fd >= 0)
            close(fd);
    }
    if (pidfd >= 0)
        close(pidfd);
    closedir(dir);
}

void gov_shmem_free(struct gov_shmem *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->f[i].fh);
    free(s->f);
    free(s->slot);
    for (int i = 0; i < s->nanchor; i++)
        close(s->anchor[i].fd);
    memset(s, 0, sizeof *s);
}
