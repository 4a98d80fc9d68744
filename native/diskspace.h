/* disk_space: the bytes a group stores in its writable area (a list of
 * directories), counted as the filesystem does: per inode max(st_size,
 * st_blocks * 512) for regular files, hard links once, st_blocks * 512 for
 * everything else, plus files the group holds open after deleting them.
 *
 * The engine keeps a fast counter that growing calls charge with an estimate
 * (classify.c) and replaces it with an exact recount before it says no, and
 * when usage is read after something may have changed behind the counter. */
#ifndef GOV_DISKSPACE_H
#define GOV_DISKSPACE_H

#include <stdint.h>
#include <sys/stat.h>

#include "gov.h"

/* (dev, ino) pairs: open addressing; ino 0 marks a free slot. */
struct gov_inoset {
    uint64_t (*key)[2];
    uint64_t cap, n;
};

/* A growth allowed whose call may not have returned yet: a recount that
 * does not see its bytes must still count it. */
struct gov_disk_inflight {
    int tid, nr;
    double cost, inodes;
};

struct gov_disk {
    int ndirs;
    int dirfd[GOV_DISK_DIRS];    /* O_PATH descriptors of the area's directories */
    uint64_t dev[GOV_DISK_DIRS];
    int64_t used;                /* bytes: the last recount plus estimates since */
    int64_t inodes;              /* inodes, the same way */
    int dirty;                   /* the counter may be off: recount when usage is read,
                                  * and before a refusal */
    uint64_t gen;                /* bumped by every charge, gov_disk_touch and
                                  * gov_disk_freed: a count walked meanwhile may have missed it */
    uint64_t grown;              /* the same, less the frees: a count may still serve the
                                  * refusal it was made for (diskwalk.c) */
    int walking;                 /* a walk runs outside the engine's lock (engine.c) */
    int orphan;                  /* its group went meanwhile: the walker frees it */
    int failed;                  /* -errno: the last recount could not finish, and
                                  * until one does the area may not grow */
    struct gov_inoset seen;      /* every inode of the area at the last recount */
    struct gov_disk_inflight *inflight;
    int ninflight, cap_inflight;
};

/* Opens the area's directories (absolute, already resolved). 0 or -errno. */
int gov_disk_new(const char *const *dirs, int n, struct gov_disk **out);
void gov_disk_free(struct gov_disk *d);

/* 1 if dev is the filesystem of one of the area's directories. */
int gov_disk_on_area(const struct gov_disk *d, uint64_t dev);
/* 1 if the last recount found inode (dev, ino) in the area. */
int gov_disk_inside(const struct gov_disk *d, uint64_t dev, uint64_t ino);

/* What a file of the area grows by when its data reaches byte `end`
 * (rounded up to its block size), 0 if it does not grow. */
double gov_disk_growth(const struct stat *st, double end);

/* Charges (sign 1) or refunds (-1) the growth `cost` (bytes) and `inodes`
 * that thread tid's call nr on inode (dev, ino) was allowed; marks the count
 * dirty when the inode was not in the area at the last recount (new, or
 * outside the area). */
void gov_disk_charge(struct gov_disk *d, int tid, int nr, double cost, double inodes,
                     uint64_t dev, uint64_t ino, int sign);
/* Thread tid makes another call, or exits: its last one has returned. */
void gov_disk_returned(struct gov_disk *d, int tid);

/* How many growths may still be in flight (their thread in its call, or on
 * a CPU); forgets those that returned. */
int gov_disk_inflight(struct gov_disk *d);

/* Something changed the area behind the counter: recount when usage is
 * read, and a count walked meanwhile is stale. */
void gov_disk_touch(struct gov_disk *d);
/* Space was given back (unlink, rmdir, a shrinking truncate): the same,
 * but a count made before errs high only. */
void gov_disk_freed(struct gov_disk *d);

/* What a walk of the area found, for gov_disk_apply. */
struct gov_disk_count {
    double inflight, inflight_inodes;   /* growths in flight as it began */
    struct gov_inoset seen;
    int64_t total;
    int unlinked;   /* deleted files held open were counted */
    int rc;
};

/* A recount in three steps, so that the slow one may run while others use
 * d: gov_disk_begin takes the growths still in flight (their calls may land
 * after the walk passed their files; those that returned are on disk);
 * gov_disk_walk walks the area and the deleted files pids hold (below),
 * reading only what gov_disk_new set (c->rc: 0 or -errno); gov_disk_apply
 * makes the counter the walk's plus those growths (c is consumed), or, if
 * the walk failed, sets failed. The count is left dirty, an estimate that
 * errs high, when it may not stay exact with no call the engine sees:
 * deleted files held open (a close or an exit frees them), growths in
 * flight (the walk may have counted what one made already: its thread, on
 * a CPU, may have left its call). */
void gov_disk_begin(struct gov_disk *d, struct gov_disk_count *c);
void gov_disk_walk(const struct gov_disk *d, const int *pids, int npids,
                   struct gov_disk_count *c);
int gov_disk_apply(struct gov_disk *d, struct gov_disk_count *c);

/* Recounts exactly: walks every directory of the area (openat from the
 * parent's fd, O_NOFOLLOW, never into another filesystem, any depth), the
 * deleted files that processes pids still hold (fds of every thread,
 * mappings), and adds the growths still in flight; sets used, clears
 * failed, and dirty as gov_disk_apply says. 0 or -errno: then failed is set
 * (the engine refuses growth until a recount finishes) and the counter is
 * left as it was. */
int gov_disk_recount(struct gov_disk *d, const int *pids, int npids);

#endif
