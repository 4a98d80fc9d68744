/* Writes from iovecs, under seccomp: what writev, pwritev and pwritev2 move
 * is read from tenant memory (classify.c), and another thread may change
 * the iovecs between the engine's read and the kernel's (issue 14's racing
 * tenant wrote 0.1-1.4% of its bytes uncharged). The kernel counts what
 * each thread really wrote (wchar, /proc/TID/io), so each such call is
 * settled against it: wchar is read before the call is let go, and again at
 * the thread's next notified call, at its exit or exit_group, or when usage
 * is read; the difference with the estimate is charged (or refunded).
 * Every write-family call of a group limited on writes is notified, so
 * nothing else of the thread moves wchar meanwhile (with net_send alone a
 * pwrite64 in between is charged too: an overcharge). A thread killed by a
 * signal right after such a call escapes its settlement. The ptrace
 * backends charge these calls at their exit stop instead (engine.c). */
#ifndef GOV_IOWRITE_H
#define GOV_IOWRITE_H

#include <stdint.h>
#include "classify.h"

struct gov_iowrite {
    int tid, nr;
    int64_t wchar0;
    struct gov_call call;
};

struct gov_iowrites {
    struct gov_iowrite *w;
    int n, cap;
};

/* writev, pwritev or pwritev2. */
int gov_iowrite_is(int nr);

/* Remembers call c (number nr) of thread tid, about to be let go. 0 or
 * -errno. */
int gov_iowrite_note(struct gov_iowrites *s, int tid, int nr, const struct gov_call *c);

/* Settles the calls of thread tid (-1: of every thread) whose thread has
 * left them: settle(arg, call, bytes the thread wrote since). A call whose
 * thread is gone is dropped (its estimate stays charged). */
void gov_iowrite_settle(struct gov_iowrites *s, int tid,
                        void (*settle)(void *, const struct gov_call *, double), void *arg);

void gov_iowrite_free(struct gov_iowrites *s);

#endif
