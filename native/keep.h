/* The hold-record file of a group: what the engine has received and not yet
 * answered, in a file mapped shared (under /run, a tmpfs), so that a
 * supervisor killed with SIGKILL loses none of it.
 *
 * The kernel hands a notification to a supervisor once: a new supervisor
 * that takes the same listener (from a keeper that holds a duplicate)
 * receives only the calls nobody received yet. The ones the dead supervisor
 * received still wait in the kernel and can be answered by their id through
 * any fd of that listener. So the engine writes a record when it receives a
 * call (its id, task, number, arch and arguments, in arrival order), marks
 * it charged just before it lets a charged call go, and clears it once
 * answered: memory writes, no system call on the per-call path. The
 * group's usage is copied beside the records at each step, so bytes moved
 * are counted once across a restart. A new supervisor re-adopts every
 * record whose id is still valid (SECCOMP_IOCTL_NOTIF_ID_VALID): a
 * received one as a new call, a charged one by letting it go uncharged.
 * A call received in the instant between the receive and its record is
 * found too: a listener's ids follow each other in the order calls arrive,
 * so it is a valid id just past the last one recorded (it is let go,
 * uncharged: its task, number and arguments died with the supervisor).
 *
 * One file per group, sparse: GOV_KEEP_SLOTS records of which only the
 * pages in use take memory. */
#ifndef GOV_KEEP_H
#define GOV_KEEP_H

#include <stdint.h>

#include "gov.h"

#define GOV_KEEP_SLOTS 65536

enum { GOV_KEEP_FREE = 0, GOV_KEEP_RECEIVED = 1, GOV_KEEP_CHARGED = 2 };

struct gov_keep_rec {
    uint32_t state;     /* GOV_KEEP_*: written last */
    uint32_t arch;
    uint64_t id;        /* the notification's id */
    uint64_t seq;       /* arrival order */
    int32_t pid, nr;
    uint64_t args[6];
};

struct gov_keep;

/* Maps the record file at path, creating it (mode 0600). resume: keep what
 * a file of this layout holds (its usage is copied to *u, its records wait
 * for gov_keep_pending); otherwise, or if the file has another layout, it
 * starts empty. 0, or 1 when something was resumed, or -errno. */
int gov_keep_open(const char *path, int resume, struct gov_usage *u, struct gov_keep **out);
/* Unmaps it; the file stays (the caller unlinks it when the group ends). */
void gov_keep_close(struct gov_keep *k);

/* A received call: its slot, or -1 when every slot is taken (the call is
 * then served but not recorded). */
int gov_keep_note(struct gov_keep *k, uint64_t id, int pid, int nr, uint32_t arch,
                  const uint64_t *args, const struct gov_usage *u);
/* Slot's call is charged (u counts it) and about to be let go. */
void gov_keep_charged(struct gov_keep *k, int slot, const struct gov_usage *u);
/* The usage changed outside a record change (a refund). */
void gov_keep_usage(struct gov_keep *k, const struct gov_usage *u);
/* Slot's call is answered (or gone): the slot is free again. */
void gov_keep_clear(struct gov_keep *k, int slot, const struct gov_usage *u);

/* Resuming: the slots of the recorded calls in arrival order (at most max);
 * how many. */
int gov_keep_pending(struct gov_keep *k, int *slots, int max);
const struct gov_keep_rec *gov_keep_rec(struct gov_keep *k, int slot);
/* The id of the last call recorded, in *id: 1, or 0 if none was. */
int gov_keep_last_id(struct gov_keep *k, uint64_t *id);

#endif
