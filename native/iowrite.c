#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "iowrite.h"
#include "procfs.h"
#include "syscalls.h"

int gov_iowrite_is(int nr)
{
    return gov_syscall_flags(nr) & GOV_SYS_IOVEC_WRITE;
}

int gov_iowrite_may_dirty(int nr)
{
    return gov_syscall_flags(nr) & GOV_SYS_MAY_DIRTY;
}

int gov_iowrite_note(struct gov_iowrites *s, struct gov_pidfds *p, int tid, int nr, int what,
                     const struct gov_call *c, const struct gov_iocounts *at)
{
    int64_t wchar, dirtied;
    int rc = 0;
    if (at && at->known) {
        wchar = at->wchar;
        dirtied = at->dirtied;
    } else if ((rc = gov_pidfds_writes(p, tid, &wchar, &dirtied)) < 0) {
        return rc;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        struct gov_iowrite *w = realloc(s->w, sizeof *w * (size_t)cap);
        if (!w)
            return -ENOMEM;
        s->w = w;
        s->cap = cap;
    }
    s->w[s->n++] = (struct gov_iowrite){tid, nr, what, wchar, dirtied, *c};
    return 0;
}

void gov_iowrite_settle(struct gov_iowrites *s, struct gov_pidfds *p, int tid,
                        void (*settle)(void *, const struct gov_call *, int, double, double),
                        void *arg, struct gov_iocounts *now)
{
    for (int i = 0; i < s->n;) {
        struct gov_iowrite *w = &s->w[i];
        if (tid >= 0 && w->tid != tid) {
            i++;
            continue;
        }
        /* Asked for every thread: only those no longer in that call. */
        int nr = tid < 0 ? gov_task_syscall(w->tid) : GOV_SC_USER;
        if (nr == w->nr || nr == GOV_SC_RUNNING) {
            i++;
            continue;
        }
        int64_t wchar, dirtied;
        if (gov_pidfds_writes(p, w->tid, &wchar, &dirtied) == 0 && wchar >= w->wchar0 &&
            dirtied >= w->dirtied0) {
            settle(arg, &w->call, w->what, (double)(wchar - w->wchar0),
                   (double)(dirtied - w->dirtied0));
            if (now && tid >= 0)
                *now = (struct gov_iocounts){1, wchar, dirtied};
        }
        *w = s->w[--s->n];
    }
}

void gov_iowrite_free(struct gov_iowrites *s)
{
    free(s->w);
    *s = (struct gov_iowrites){0};
}
