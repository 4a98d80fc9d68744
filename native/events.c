/* What the engine reports: the ring of events that Python reads
 * (gov_engine_events, woken through an eventfd), and the hold-record file
 * of a group kept across restarts (keep.h): each call's record from receipt
 * to answer, and the re-adoption of the calls a dead supervisor left. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine_int.h"

#define KEEP_ID_PROBE 256           /* ids past the last recorded one, looked at on resume */

void emit(struct gov_engine *e, int type, int group, int res, int pid, int nr,
          int64_t value)
{
    if (e->ring_len == EVENT_RING) {
        e->overflowed = 1;
        return;
    }
    if (e->overflowed) {
        e->overflowed = 0;
        emit(e, GOV_EV_OVERFLOW, group, -1, 0, -1, 0);
    }
    e->ring[(e->ring_head + e->ring_len++) % EVENT_RING] =
        (struct gov_event){type, group, res, pid, nr, value};
    uint64_t one = 1;
    ssize_t n = write(e->evfd, &one, sizeof one);
    (void)n;
}

/* ---- the hold-record file (keep.h): received calls outlive a restart ---- */

void keep_received(struct hold *h, uint32_t arch)
{
    struct group *g = h->g;
    if (g->keep)
        h->rec = gov_keep_note(g->keep, h->id, h->pid, h->nr, arch, h->args, &g->u);
}

void keep_charged(struct hold *h)
{
    if (h->rec >= 0)
        gov_keep_charged(h->g->keep, h->rec, &h->g->u);
}

/* h's call is answered, or no longer waits. */
void keep_done(struct hold *h)
{
    if (h->rec >= 0)
        gov_keep_clear(h->g->keep, h->rec, &h->g->u);
    h->rec = -1;
}

int gov_engine_event_fd(struct gov_engine *e)
{
    return e->evfd;
}

int gov_engine_share_event_fd(struct gov_engine *e, struct gov_engine *with)
{
    int fd = fcntl(with->evfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&e->mu);
    close(e->evfd);
    e->evfd = fd;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int gov_engine_events(struct gov_engine *e, struct gov_event *out, int max)
{
    pthread_mutex_lock(&e->mu);
    int n = 0;
    uint64_t v;
    ssize_t r = read(e->evfd, &v, sizeof v);
    (void)r;
    while (n < max && e->ring_len) {
        out[n++] = e->ring[e->ring_head];
        e->ring_head = (e->ring_head + 1) % EVENT_RING;
        e->ring_len--;
    }
    if (e->ring_len) {
        uint64_t one = 1;
        r = write(e->evfd, &one, sizeof one);
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- a group kept across restarts (keep.h) ---- */

int gov_group_keep(struct gov_engine *e, int id, const char *path, int resume)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    int rc = !g ? -ENOENT : g->keep ? -EEXIST : 0;
    if (rc == 0)
        rc = gov_keep_open(path, resume, &g->u, &g->keep);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_group_resume(struct gov_engine *e, int id, int fd)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    struct listener *l = NULL;
    int rc = !g ? -ENOENT : !g->keep ? -EINVAL : 0;
    if (rc < 0)
        close(fd);
    else
        rc = listener_add(e, g, fd, &l);
    int *slots = rc == 0 ? malloc(GOV_KEEP_SLOTS * sizeof *slots) : NULL;
    if (rc == 0 && !slots)
        rc = -ENOMEM;
    /* Under the mutex, so that no call received from now on overtakes them. */
    int n = slots ? gov_keep_pending(g->keep, slots, GOV_KEEP_SLOTS) : 0;
    for (int i = 0; i < n; i++) {
        const struct gov_keep_rec *r = gov_keep_rec(g->keep, slots[i]);
        uint64_t nid = r->id;
        struct hold *h = NULL;
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &nid) == 0 && !(h = new_hold(g)))
            respond(e, l, nid, 0, -ENOMEM, 0);
        if (!h) { /* answered or gone before the restart */
            gov_keep_clear(g->keep, slots[i], &g->u);
            continue;
        }
        h->l = l;
        h->id = r->id;
        h->pid = r->pid;
        h->nr = r->nr;
        memcpy(h->args, r->args, sizeof h->args);
        h->rec = slots[i];
        rc++;
        if (r->state == GOV_KEEP_CHARGED) {
            answer(e, h, 0, 0, 1); /* its charge is in the usage kept */
            free_hold(e, h);
        } else {
            g->u.notifications--; /* counted when first received */
            on_call(e, h, r->arch);
        }
    }
    /* A call received just before its record could be written. */
    uint64_t last;
    for (int d = 1; rc >= 0 && d <= KEEP_ID_PROBE && gov_keep_last_id(g->keep, &last); d++) {
        uint64_t nid = last + (uint64_t)d;
        int recorded = 0;
        for (int i = 0; i < n && !recorded; i++)
            recorded = gov_keep_rec(g->keep, slots[i])->id == nid;
        if (!recorded && ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &nid) == 0 &&
            respond(e, l, nid, 0, 0, 1) == 0)
            rc++;
    }
    free(slots);
    pthread_mutex_unlock(&e->mu);
    return rc;
}
