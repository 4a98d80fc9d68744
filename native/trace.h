/* The ptrace backends' tracer: one thread per engine, created with the first
 * ptrace group, that owns every tracee (ptrace requests must come from the
 * thread that attached). It blocks in waitid(__WALL | __WNOTHREAD), so it
 * never reaps the supervisor's other children. It handles the stops in rounds
 * (every stop waiting then, so that no tracee waits behind younger ones) and
 * takes the engine's mutex for each: the engine's own code decides every
 * governed call.
 *
 * It is woken for rare work (an attach, an answer that the engine thread
 * decided, shutdown) by GOV_TRACE_WAKE_SIG sent to the thread, whose handler
 * is installed without SA_RESTART. Internal to native/: not for cffi. */
#ifndef GOV_TRACE_H
#define GOV_TRACE_H

#include <pthread.h>
#include <stdint.h>

#include "classify.h"

#define GOV_TRACE_WAKE_SIG (SIGRTMAX - 1)

struct gov_engine;
struct gov_tracer;

struct gov_tracee {
    int tid;
    int group;
    int backend;          /* GOV_BACKEND_PTRACE or GOV_BACKEND_PTRACE_SYSCALL */
    int nr;               /* the call it stopped in */
    void *hold;           /* engine: the held call of this stop, or NULL */
    int restart;          /* skipped for a signal: at its exit stop it returns
                             -restart, a restart code (the engine's choice) */
    int at_exit;          /* a read: charge what it returns at its exit stop */
    struct gov_call exit_call;  /* what was charged for that read */
    struct gov_tracee *next;
};

/* How a stopped governed call goes on. */
enum {
    GOV_TR_GO = 1,        /* run it */
    GOV_TR_DENY,          /* skip it; it returns `ret` */
    GOV_TR_INTERRUPT,     /* skip it; at its exit it returns -ret, a restart code that
                             makes the kernel's signal code restart it (or EINTR) */
};

/* 0 or -errno. Starts the thread; mu is the engine's mutex. */
int gov_tracer_new(struct gov_tracer **out, struct gov_engine *e, pthread_mutex_t *mu);
/* Stops the thread (its tracees die with it: PTRACE_O_EXITKILL); the
 * tracees' memory stays until gov_tracer_free. */
void gov_tracer_stop(struct gov_tracer *tr);
/* Stops the thread if it runs, frees everything. */
void gov_tracer_free(struct gov_tracer *tr);

/* With mu held, from any thread but the tracer: PTRACE_SEIZE pid for group;
 * returns once done (mu is released meanwhile). 0 or -errno. */
int gov_tracer_attach(struct gov_tracer *tr, int pid, int group, int backend);

/* With mu held, from any thread: resumes t's governed call as `how` says
 * (at once on the tracer thread, else queued for it). */
void gov_tracer_answer(struct gov_tracer *tr, struct gov_tracee *t, int how, int64_t ret);

/* Implemented by the engine, called on the tracer thread with mu held. */
/* A governed call of t (a seccomp-trace stop, or a syscall-entry stop under
 * ptrace-syscall); the engine answers it, now or later, unless it returns 0
 * (not governed: the tracer lets it run). */
int gov_engine_traced_call(struct gov_engine *e, struct gov_tracee *t, uint32_t arch, int nr,
                           const uint64_t *args);
/* The exit stop of a read that t->exit_call charged: it returned ret. */
void gov_engine_traced_exit(struct gov_engine *e, struct gov_tracee *t, int64_t ret);
/* t is gone (exited, or replaced by an exec): drop its held call. */
void gov_engine_traced_gone(struct gov_engine *e, struct gov_tracee *t);

#endif
