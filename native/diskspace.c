#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diskspace.h"
#include "procfs.h"

/* Deeper trees make the recount fail, and with it (failing closed) every
 * growth that needs one: the tenant can only deny itself. */
#define MAX_DEPTH 256

static uint64_t slot_of(const struct gov_inoset *s, uint64_t dev, uint64_t ino)
{
    return ((ino * 0x9E3779B97F4A7C15ULL) ^ dev) & (s->cap - 1);
}

static int set_has(const struct gov_inoset *s, uint64_t dev, uint64_t ino)
{
    if (!s->cap)
        return 0;
    for (uint64_t i = slot_of(s, dev, ino);; i = (i + 1) & (s->cap - 1)) {
        if (!s->key[i][1])
            return 0;
        if (s->key[i][0] == dev && s->key[i][1] == ino)
            return 1;
    }
}

static void set_put(struct gov_inoset *s, uint64_t dev, uint64_t ino)
{
    uint64_t i = slot_of(s, dev, ino);
    while (s->key[i][1])
        i = (i + 1) & (s->cap - 1);
    s->key[i][0] = dev;
    s->key[i][1] = ino;
    s->n++;
}

/* 1 if added, 0 if it was there, -ENOMEM. */
static int set_add(struct gov_inoset *s, uint64_t dev, uint64_t ino)
{
    if (set_has(s, dev, ino))
        return 0;
    if (2 * (s->n + 1) > s->cap) {
        struct gov_inoset bigger = {.cap = s->cap ? s->cap * 2 : 1024};
        bigger.key = calloc(bigger.cap, sizeof *bigger.key);
        if (!bigger.key)
            return -ENOMEM;
        for (uint64_t i = 0; i < s->cap; i++)
            if (s->key[i][1])
                set_put(&bigger, s->key[i][0], s->key[i][1]);
        free(s->key);
        *s = bigger;
    }
    set_put(s, dev, ino);
    return 1;
}

int gov_disk_new(const char *const *dirs, int n, struct gov_disk **out)
{
    if (n < 1 || n > GOV_DISK_DIRS)
        return -EINVAL;
    struct gov_disk *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        struct stat st;
        int fd = open(dirs[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
            int rc = -errno;
            if (fd >= 0)
                close(fd);
            gov_disk_free(d);
            return rc;
        }
        d->dirfd[d->ndirs] = fd;
        d->dev[d->ndirs++] = st.st_dev;
    }
    *out = d;
    return 0;
}

void gov_disk_free(struct gov_disk *d)
{
    for (int i = 0; i < d->ndirs; i++)
        close(d->dirfd[i]);
    free(d->seen.key);
    free(d->inflight);
    free(d);
}

int gov_disk_on_area(const struct gov_disk *d, uint64_t dev)
{
    for (int i = 0; i < d->ndirs; i++)
        if (d->dev[i] == dev)
            return 1;
    return 0;
}

int gov_disk_inside(const struct gov_disk *d, uint64_t dev, uint64_t ino)
{
    return set_has(&d->seen, dev, ino);
}

static int64_t inode_bytes(const struct stat *st)
{
    int64_t blocks = (int64_t)st->st_blocks * 512;
    return S_ISREG(st->st_mode) && st->st_size > blocks ? st->st_size : blocks;
}

double gov_disk_growth(const struct stat *st, double end)
{
    uint64_t blk = st->st_blksize > 0 ? (uint64_t)st->st_blksize : 4096;
    double after = end <= 0 ? 0 : (double)(((uint64_t)end + blk - 1) / blk * blk);
    double now = (double)inode_bytes(st);
    return after > now ? after - now : 0;
}

void gov_disk_returned(struct gov_disk *d, int tid)
{
    for (int i = 0; i < d->ninflight; i++)
        if (d->inflight[i].tid == tid) {
            d->inflight[i] = d->inflight[--d->ninflight];
            return;
        }
}

void gov_disk_charge(struct gov_disk *d, int tid, int nr, double cost, uint64_t dev,
                     uint64_t ino, int sign)
{
    d->used += (int64_t)(cost * sign);
    if (!set_has(&d->seen, dev, ino))
        d->dirty = 1;
    gov_disk_returned(d, tid);
    if (sign < 0)
        return;
    if (d->ninflight == d->cap_inflight) {
        int cap = d->cap_inflight ? d->cap_inflight * 2 : 16;
        struct gov_disk_inflight *p = realloc(d->inflight, sizeof *p * cap);
        if (!p)
            return; /* the recount then misses this call: one call over at worst */
        d->inflight = p;
        d->cap_inflight = cap;
    }
    d->inflight[d->ninflight++] = (struct gov_disk_inflight){tid, nr, cost};
}

/* Growths whose thread is still in (or may be in: on a CPU) its call. */
static double inflight_sum(struct gov_disk *d)
{
    double sum = 0;
    for (int i = 0; i < d->ninflight;) {
        int nr = gov_task_syscall(d->inflight[i].tid);
        if (nr == d->inflight[i].nr || nr == GOV_SC_RUNNING) {
            sum += d->inflight[i].cost;
            i++;
        } else {
            d->inflight[i] = d->inflight[--d->ninflight];
        }
    }
    return sum;
}

/* Counts an inode once; 1 if it was new. */
static int count(struct gov_inoset *s, int64_t *total, const struct stat *st)
{
    int rc = set_add(s, st->st_dev, st->st_ino);
    if (rc > 0)
        *total += inode_bytes(st);
    return rc;
}

static DIR *open_dir(int at, const char *name, uint64_t dev)
{
    struct stat st;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    /* Swapped for a mount point since we looked: not ours. */
    DIR *dir = fstat(fd, &st) == 0 && st.st_dev == dev ? fdopendir(fd) : NULL;
    if (!dir)
        close(fd);
    return dir;
}

/* Depth first, with an explicit stack of open directories. */
static int walk(int rootfd, uint64_t dev, struct gov_inoset *s, int64_t *total)
{
    DIR *stack[MAX_DEPTH];
    struct stat st;
    int depth = 0, rc = 0;
    if (fstat(rootfd, &st) < 0)
        return -errno;
    if ((rc = count(s, total, &st)) <= 0)
        return rc; /* an area directory inside another one: counted there */
    if (!(stack[depth++] = open_dir(rootfd, ".", dev)))
        return -errno;
    while (depth && rc >= 0) {
        DIR *dir = stack[depth - 1];
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            rc = -errno;
            closedir(stack[--depth]);
            continue;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
            continue; /* gone meanwhile, or another filesystem mounted here */
        if ((rc = count(s, total, &st)) <= 0 || !S_ISDIR(st.st_mode))
            continue;
        if (depth == MAX_DEPTH) {
            rc = -ELOOP;
            break;
        }
        DIR *sub = open_dir(dirfd(dir), de->d_name, dev);
        if (sub)
            stack[depth++] = sub;
        else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
            rc = -errno;
    }
    while (depth)
        closedir(stack[--depth]);
    return rc < 0 ? rc : 0;
}

/* Files the group's processes hold open after deleting them still use space. */
static int count_deleted_open(const struct gov_disk *d, const int *pids, int npids,
                              struct gov_inoset *s, int64_t *total)
{
    char path[64];
    for (int i = 0; i < npids; i++) {
        snprintf(path, sizeof path, "/proc/%d/fd", pids[i]);
        DIR *dir = opendir(path);
        if (!dir)
            continue; /* exited */
        struct dirent *de;
        struct stat st;
        int rc = 0;
        while ((de = readdir(dir)) && rc >= 0)
            if (de->d_name[0] != '.' && fstatat(dirfd(dir), de->d_name, &st, 0) == 0 &&
                S_ISREG(st.st_mode) && st.st_nlink == 0 && gov_disk_on_area(d, st.st_dev))
                rc = count(s, total, &st);
        closedir(dir);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int gov_disk_recount(struct gov_disk *d, const int *pids, int npids)
{
    struct gov_inoset seen = {0};
    int64_t total = 0;
    int rc = 0;
    for (int i = 0; i < d->ndirs && rc == 0; i++)
        rc = walk(d->dirfd[i], d->dev[i], &seen, &total);
    if (rc == 0)
        rc = count_deleted_open(d, pids, npids, &seen, &total);
    if (rc < 0) {
        free(seen.key);
        return rc;
    }
    free(d->seen.key);
    d->seen = seen;
    d->used = total + (int64_t)inflight_sum(d);
    d->dirty = 0;
    return 0;
}
