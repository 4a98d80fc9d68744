/* The engine: one thread that receives seccomp notifications from every
 * group's listeners (and, for ptrace groups, a tracer thread that receives
 * their stops: trace.h), charges each call to its group, and answers CONTINUE
 * at once, later (held), or with an errno (denied). Python configures it and
 * reads counters and events; the thread itself never touches Python. */
#ifndef GOV_ENGINE_H
#define GOV_ENGINE_H

#include "gov.h"

struct gov_engine;

/* 0 or -errno. Starts the engine thread. */
int gov_engine_new(struct gov_engine **out);
/* Stops the thread, answers nothing more (held calls then fail with ENOSYS
 * when their listeners close), closes every fd the engine owns. */
void gov_engine_free(struct gov_engine *e);

/* 1 if the listeners use SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0 if not (the
 * kernel lacks it, or it was turned off); -1 until the first listener. */
int gov_engine_sync_wakeup(struct gov_engine *e);
/* on = 0: listeners added from now on do without SYNC_WAKE_UP (to measure
 * what it saves). The default is 1. */
void gov_engine_set_sync_wakeup(struct gov_engine *e, int on);

/* A new group whose calls reach the engine through `backend` (GOV_BACKEND_*;
 * the first ptrace group starts the tracer thread, trace.h); returns its id
 * (>= 0) or -errno. */
int gov_group_new(struct gov_engine *e, const struct gov_limits *lim, int backend);
/* init_pid: pid 1 of a spawned root; its descendants are the group's tasks. */
int gov_group_add_init(struct gov_engine *e, int group, int init_pid);
int gov_group_drop_init(struct gov_engine *e, int group, int init_pid);
/* Ptrace backends: traces pid (spawned in trace mode, not yet gone) and every
 * task it creates, from their first instruction. */
int gov_group_add_tracee(struct gov_engine *e, int group, int pid);
/* The engine takes ownership of fd (closed on error too). */
int gov_group_add_listener(struct gov_engine *e, int group, int fd);
/* disk_space: the group's writable area, n directories (absolute paths
 * without symlinks), counted at once. -EEXIST if it has one. */
int gov_group_disk_area(struct gov_engine *e, int group, const char *const *dirs, int n);
int gov_group_usage(struct gov_engine *e, int group, struct gov_usage *out);
/* The group has a new interface of its own (a container's next command gets
 * a new veth): its counters start from zero, and the next settlements count
 * from them. */
int gov_group_attach_net(struct gov_engine *e, int group);
/* Settles net_send / net_recv with what really crossed the group's own
 * network interface: the totals it has sent and received so far (counters
 * that never go back: -EINVAL if they do). The difference between what the
 * interface moved since the last settlement and what the engine charged the
 * calls meanwhile goes to usage and to the buckets (debt, or a refund for
 * traffic that never left, e.g. loopback); held calls are then looked at
 * again. */
int gov_group_settle_net(struct gov_engine *e, int group, uint64_t sent_total,
                         uint64_t recv_total);
/* Rate `res` of the group is shared by class cls (share.h), with a
 * guarantee (bytes/s, 0: none; it only borrows) and a burst. */
struct gov_class;
int gov_group_set_class(struct gov_engine *e, int group, int res, struct gov_class *cls,
                        double guarantee, double burst);
/* How fast the group may borrow rate `res` of its class now (its weight's
 * share of what the class has spare; 0: as fast as the class lends). */
int gov_group_set_borrow(struct gov_engine *e, int group, int res, double rate, double burst);
/* Keeps the group's received calls and usage in the record file at path
 * (keep.h), so that a supervisor started after this one dies can take the
 * group over. resume: the file is a dead supervisor's: the group's usage
 * starts from it, and gov_group_resume() re-adopts its calls. 0, 1 when
 * something was resumed, or -errno. */
int gov_group_keep(struct gov_engine *e, int group, const char *path, int resume);
/* Adds listener fd (a duplicate of the dead supervisor's, from its keeper)
 * and re-adopts the calls recorded in the group's file that still wait, in
 * the order they arrived: a received call is decided anew (held, let go or
 * denied), a charged one goes without being charged again. How many, or
 * -errno. */
int gov_group_resume(struct gov_engine *e, int group, int fd);
/* At most n (>= 1) of the group's calls wait at once, held or waiting for
 * data; a call past them is denied (EAGAIN; ENOMEM for memory) with a
 * GOV_EV_HELD_CAP event. The default is GOV_MAX_HELD. */
int gov_group_set_max_held(struct gov_engine *e, int group, int n);
/* Forgets the group: its listeners are closed (so pending calls fail). */
int gov_group_remove(struct gov_engine *e, int group);

/* An eventfd that is readable when events are waiting. */
int gov_engine_event_fd(struct gov_engine *e);
/* From now on e signals its events on `with`'s eventfd: the engines of one
 * supervisor (one per core) share one fd to wait on. 0 or -errno. */
int gov_engine_share_event_fd(struct gov_engine *e, struct gov_engine *with);
/* Moves up to max events into out; returns how many. */
int gov_engine_events(struct gov_engine *e, struct gov_event *out, int max);

#endif
