/* Writes settled against the kernel's own counters of the thread that made
 * them (/proc/TID/task/TID/io), read before the call is let go and again at
 * the thread's next governed call, at its exit or exit_group, or when usage
 * is read. Every write-family call of a group limited on writes is governed,
 * so nothing else of the thread moves the counters meanwhile.
 *
 * GOV_IOW_WROTE, under seccomp: what writev, pwritev and pwritev2 move is
 * read from tenant memory (classify.c), and another thread may change the
 * iovecs before the kernel reads them, even while the call is held (issue
 * 14's racing tenant wrote 0.1-1.4% of its bytes uncharged; issue 16's 300
 * MiB in 3 s under disk_write=100/s). wchar (what its write-family calls
 * returned) is settled against the estimate: a debt or a refund. The
 * ptrace backends charge these calls at their exit stop instead (holds.c).
 *
 * GOV_IOW_DIRTIED, both backends, groups with disk_write or disk_space, a
 * call charged as no file (of the area): the fd was looked at when the call
 * arrived, and another thread may make the number name a file before the
 * kernel uses it (dup2). write_bytes (page cache the thread dirtied) says
 * whether, and how much, a file was written (docs/design.md).
 *
 * A thread killed by a signal right after such a call escapes its
 * settlement. */
#ifndef GOV_IOWRITE_H
#define GOV_IOWRITE_H

#include <stdint.h>
#include "classify.h"

enum { GOV_IOW_WROTE = 1, GOV_IOW_DIRTIED = 2 };

struct gov_iowrite {
    int tid, nr, what;
    int64_t wchar0, dirtied0;
    struct gov_call call;
};

struct gov_iowrites {
    struct gov_iowrite *w;
    int n, cap;
};

/* writev, pwritev or pwritev2. */
int gov_iowrite_is(int nr);
/* A call that may write a file: the write family and the transfers. */
int gov_iowrite_may_dirty(int nr);

/* The counters of a thread (wchar, write_bytes). */
struct gov_iocounts {
    int known;
    int64_t wchar, dirtied;
};

/* Remembers call c (number nr) of thread tid, about to be let go, to settle
 * `what` of it. The thread's counters now: *at if known (read since it made
 * this call), else read through p. 0 or -errno. */
int gov_iowrite_note(struct gov_iowrites *s, struct gov_pidfds *p, int tid, int nr, int what,
                     const struct gov_call *c, const struct gov_iocounts *at);

/* Settles the calls of thread tid (-1: of every thread) whose thread has
 * left them: settle(arg, call, what, bytes its calls wrote since, bytes of
 * page cache it dirtied since). A call whose thread is gone is dropped (its
 * estimate stays charged). For a thread tid that is in its next call, the
 * counters read are where that call starts: *now (may be NULL). */
void gov_iowrite_settle(struct gov_iowrites *s, struct gov_pidfds *p, int tid,
                        void (*settle)(void *, const struct gov_call *, int, double, double),
                        void *arg, struct gov_iocounts *now);

void gov_iowrite_free(struct gov_iowrites *s);

#endif
