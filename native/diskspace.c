#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>

#include "diskspace.h"
#include "procfs.h"

/* Directories the walk keeps open at once: deeper levels are closed and
 * found again through ".." when the walk comes back to them. */
#define OPEN_LEVELS 64

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

void gov_disk_charge(struct gov_disk *d, int tid, int nr, double cost, double inodes,
                     uint64_t dev, uint64_t ino, int sign)
{
    d->used += (int64_t)(cost * sign);
    d->inodes += (int64_t)(inodes * sign);
    d->gen++;
    d->grown++;
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
    d->inflight[d->ninflight++] = (struct gov_disk_inflight){tid, nr, cost, inodes};
}

/* Growths whose thread is still in (or may be in: on a CPU) its call:
 * bytes, and inodes in *inodes. */
static double inflight_sum(struct gov_disk *d, double *inodes)
{
    double sum = 0;
    *inodes = 0;
    for (int i = 0; i < d->ninflight;) {
        int nr = gov_task_syscall(d->inflight[i].tid);
        if (nr == d->inflight[i].nr || nr == GOV_SC_RUNNING) {
            sum += d->inflight[i].cost;
            *inodes += d->inflight[i].inodes;
            i++;
        } else {
            d->inflight[i] = d->inflight[--d->ninflight];
        }
    }
    return sum;
}

int gov_disk_inflight(struct gov_disk *d)
{
    double inodes;
    inflight_sum(d, &inodes);
    return d->ninflight;
}

/* Counts an inode once; 1 if it was new. */
static int count(struct gov_inoset *s, int64_t *total, const struct stat *st)
{
    int rc = set_add(s, st->st_dev, st->st_ino);
    if (rc > 0)
        *total += inode_bytes(st);
    return rc;
}

/* Opens directory `name` at `at` on filesystem dev; NULL with errno set
 * (EXDEV: a mount point, not ours). */
static DIR *open_dir(int at, const char *name, uint64_t dev)
{
    struct stat st;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *dir = NULL;
    if (fstat(fd, &st) < 0)
        ;
    else if (st.st_dev != dev)
        errno = EXDEV; /* swapped for a mount point since we looked */
    else
        dir = fdopendir(fd);
    if (!dir)
        close(fd);
    return dir;
}

/* One directory on the walk's path: open, or closed at position pos. */
struct level {
    DIR *dir;
    long pos;
    uint64_t ino;
};

/* Reopens the closed level `up` from its child directory `below` (through
 * ".."), where the walk left it. -ESTALE if it moved meanwhile. */
static int reopen(struct level *up, DIR *below, uint64_t dev)
{
    struct stat st;
    DIR *dir = open_dir(dirfd(below), "..", dev);
    if (!dir)
        return -errno;
    if (fstat(dirfd(dir), &st) < 0 || st.st_ino != up->ino) {
        closedir(dir);
        return -ESTALE;
    }
    seekdir(dir, up->pos);
    up->dir = dir;
    return 0;
}

/* Depth first with openat/fstatat from the parent's fd, so no depth is too
 * deep for a path; at most OPEN_LEVELS directories open. Any error but a
 * file gone meanwhile fails the walk: a count that missed a subtree would
 * let it grow for free. */
static int walk(int rootfd, uint64_t dev, struct gov_inoset *s, int64_t *total)
{
    struct level *stack = NULL;
    struct stat st;
    int depth = 0, cap = 0, lowest_open = 0, rc = 0;
    if (fstat(rootfd, &st) < 0)
        return -errno;
    if ((rc = count(s, total, &st)) <= 0)
        return rc; /* an area directory inside another one: counted there */
    DIR *next = open_dir(rootfd, ".", dev); /* the directory to enter */
    if (!next)
        return -errno;
    while (rc >= 0) {
        if (depth == cap) {
            cap = cap ? cap * 2 : 64;
            struct level *p = realloc(stack, sizeof *p * cap);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            stack = p;
        }
        if (next) {
            stack[depth++] = (struct level){next, 0, st.st_ino};
            next = NULL;
            if (depth - lowest_open > OPEN_LEVELS) {
                struct level *old = &stack[lowest_open++];
                old->pos = telldir(old->dir);
                closedir(old->dir);
                old->dir = NULL;
            }
        }
        DIR *dir = stack[depth - 1].dir;
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            if ((rc = -errno) < 0 || depth == 1)
                break;
            if (!stack[depth - 2].dir) {
                if ((rc = reopen(&stack[depth - 2], dir, dev)) < 0)
                    break;
                lowest_open--;
            }
            closedir(dir);
            stack[--depth].dir = NULL;
            continue;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT)
                rc = -errno;
            continue; /* gone meanwhile */
        }
        if (st.st_dev != dev || (rc = count(s, total, &st)) <= 0 || !S_ISDIR(st.st_mode))
            continue; /* another filesystem mounted here, or counted */
        /* Gone, or swapped for a mount point, a file or a symlink since
         * fstatat: what is there now is counted where the walk finds it.
         * (A tenant cannot keep moving directories during a walk: before
         * a refusal its renames wait for the walk; for a usage read they
         * make the count stale, and it is thrown away: diskwalk.c.) */
        if (!(next = open_dir(dirfd(dir), de->d_name, dev)) && errno != ENOENT &&
            errno != EXDEV && errno != ENOTDIR && errno != ELOOP)
            rc = -errno;
    }
    if (next)
        closedir(next);
    for (int i = lowest_open; i < depth; i++)
        closedir(stack[i].dir);
    free(stack);
    return rc < 0 ? rc : 0;
}

/* Adds every file of the area in directory `path` (a /proc fd or map_files
 * directory, whose entries lead to the files) that no longer has a name:
 * those that do were found by the walk. 0 if gone (an exited task). */
static int count_unlinked(const struct gov_disk *d, const char *path, struct gov_inoset *s,
                          int64_t *total)
{
    DIR *dir = opendir(path);
    if (!dir)
        return errno == ENOENT || errno == ESRCH ? 0 : -errno;
    struct dirent *de;
    struct stat st;
    int rc = 0;
    while (rc >= 0 && (errno = 0, de = readdir(dir)))
        if (de->d_name[0] != '.' && fstatat(dirfd(dir), de->d_name, &st, 0) == 0 &&
            st.st_nlink == 0 && gov_disk_on_area(d, st.st_dev))
            rc = count(s, total, &st);
    if (rc >= 0 && errno && errno != ENOENT && errno != ESRCH)
        rc = -errno; /* readdir failed, but for the task leaving */
    closedir(dir);
    return rc < 0 ? rc : 0;
}

/* 1 if thread tid is not its process's leader and shares the leader's fd
 * table (kcmp): its fds are the leader's, scanned once. */
static int shares_fds(int tid, int pid)
{
    return tid != pid && syscall(SYS_kcmp, pid, tid, KCMP_FILES, 0, 0) == 0;
}

/* Deleted files still use space while anything holds them: an fd of any
 * thread (a thread may have its own fd table) or a mapping, whose fd may be
 * closed (map_files). fds in flight in unix sockets are refused at sendmsg
 * (filter.c), so there are none. */
static int count_held(const struct gov_disk *d, const int *pids, int npids,
                      struct gov_inoset *s, int64_t *total)
{
    char path[96];
    int rc = 0;
    for (int i = 0; i < npids && rc == 0; i++) {
        snprintf(path, sizeof path, "/proc/%d/map_files", pids[i]);
        if ((rc = count_unlinked(d, path, s, total)) < 0)
            break;
        snprintf(path, sizeof path, "/proc/%d/task", pids[i]);
        DIR *tasks = opendir(path);
        if (!tasks)
            continue; /* exited */
        struct dirent *de;
        while (rc == 0 && (de = readdir(tasks)))
            if (de->d_name[0] != '.' && !shares_fds(atoi(de->d_name), pids[i])) {
                snprintf(path, sizeof path, "/proc/%d/task/%.16s/fd", pids[i], de->d_name);
                rc = count_unlinked(d, path, s, total);
            }
        closedir(tasks);
    }
    return rc;
}

void gov_disk_touch(struct gov_disk *d)
{
    d->dirty = 1;
    d->gen++;
    d->grown++;
}

void gov_disk_freed(struct gov_disk *d)
{
    d->dirty = 1;
    d->gen++;
}

void gov_disk_begin(struct gov_disk *d, struct gov_disk_count *c)
{
    *c = (struct gov_disk_count){0};
    c->inflight = inflight_sum(d, &c->inflight_inodes);
}

void gov_disk_walk(const struct gov_disk *d, const int *pids, int npids,
                   struct gov_disk_count *c)
{
    for (int i = 0; i < d->ndirs && c->rc == 0; i++)
        c->rc = walk(d->dirfd[i], d->dev[i], &c->seen, &c->total);
    uint64_t named = c->seen.n;
    if (c->rc == 0)
        c->rc = count_held(d, pids, npids, &c->seen, &c->total);
    c->unlinked = c->seen.n > named;
}

int gov_disk_apply(struct gov_disk *d, struct gov_disk_count *c)
{
    if (c->rc < 0) {
        free(c->seen.key);
        d->failed = c->rc;
        d->dirty = 1;
        return c->rc;
    }
    d->failed = 0;
    free(d->seen.key);
    d->seen = c->seen;
    /* Those that returned during the walk count too: it may have passed
     * their files before they landed. */
    d->used = c->total + (int64_t)c->inflight;
    d->inodes = (int64_t)(d->seen.n + c->inflight_inodes);
    d->dirty = c->unlinked || c->inflight > 0 || c->inflight_inodes > 0;
    return 0;
}

int gov_disk_recount(struct gov_disk *d, const int *pids, int npids)
{
    struct gov_disk_count c;
    gov_disk_begin(d, &c);
    gov_disk_walk(d, pids, npids, &c);
    return gov_disk_apply(d, &c);
}
