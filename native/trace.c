#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "gov.h"
#include "procfs.h"
#include "trace.h"

#define BUCKETS 4096
#define MAX_NS 4096
#define ROUND_MAX 512    /* stops handled in one round (handle_round) */
#define ORIG_RAX offsetof(struct user_regs_struct, orig_rax)
#define RAX offsetof(struct user_regs_struct, rax)

struct attach {
    int pid, group, backend;
    int rc;                   /* 1 until done */
    struct attach *next;
};

struct gov_tracer {
    struct gov_engine *e;
    pthread_mutex_t *mu;
    pthread_t thread;
    pid_t tid;
    pthread_cond_t done;      /* an attach finished */
    int started;
    int pending;              /* atomic: work waits (attaches, answers, stop) */
    int stop;
    int stopped;              /* its thread has been joined */
    siginfo_t si;             /* what the last wait took; si_pid 0: nothing */
    struct attach *attaches;
    struct gov_tracee *answers, **answers_tail;  /* answers the engine thread decided */
    struct gov_tracee *tab[BUCKETS];
    struct {
        uint64_t ino;
        int group, backend;
    } ns[MAX_NS];             /* each spawn's pid namespace: whose tasks live there */
    int nns;
};

/* Per tracee, beside struct gov_tracee: its queued answer. */
struct queued {
    struct gov_tracee t;
    int how;
    int64_t ret;
    int queued;
    struct gov_tracee *next_answer;
};

#define Q(t) ((struct queued *)(t))

/* ---- waking the tracer ----
 *
 * The tracer blocks in waitid(); a wake-up is the signal, whose handler
 * jumps back to the loop when it lands between the loop's last look at its
 * work and the end of that wait, so no wake-up is lost. Nor is a stop that
 * the wait took just before the jump: the kernel has written its pid into
 * tr->si by then, and the loop handles it first. */

static __thread sigjmp_buf wake_jb;
static __thread volatile sig_atomic_t in_window;

static void on_wake(int sig)
{
    if (in_window) {
        in_window = 0;
        siglongjmp(wake_jb, 1);
    }
}

static void kick(struct gov_tracer *tr)
{
    __atomic_store_n(&tr->pending, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_tgkill, getpid(), tr->tid, GOV_TRACE_WAKE_SIG);
}

/* ---- tracees ---- */

/* tid may be an -errno from gov_task_status (a task gone meanwhile). */
static struct gov_tracee *find(struct gov_tracer *tr, int tid)
{
    if (tid <= 0)
        return NULL;
    for (struct gov_tracee *t = tr->tab[tid % BUCKETS]; t; t = t->next)
        if (t->tid == tid)
            return t;
    return NULL;
}

static struct gov_tracee *add(struct gov_tracer *tr, int tid, int group, int backend)
{
    struct queued *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->t = (struct gov_tracee){.tid = tid, .group = group, .backend = backend};
    q->t.exit_call.wait_fd = -1;
    q->t.next = tr->tab[tid % BUCKETS];
    tr->tab[tid % BUCKETS] = &q->t;
    return &q->t;
}

static void forget(struct gov_tracer *tr, struct gov_tracee *t)
{
    gov_engine_traced_gone(tr->e, t);
    for (struct gov_tracee **pp = &tr->tab[t->tid % BUCKETS]; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    if (Q(t)->queued) {
        struct gov_tracee **pp = &tr->answers;
        while (*pp != t)
            pp = &Q(*pp)->next_answer;
        *pp = Q(t)->next_answer;
        if (!*pp)
            tr->answers_tail = pp;
    }
    free(Q(t));
}

static uint64_t pidns_of(int tid)
{
    char path[64];
    struct stat s;
    snprintf(path, sizeof path, "/proc/%d/ns/pid", tid);
    return stat(path, &s) == 0 ? (uint64_t)s.st_ino : 0;
}

/* A task's entry is made at its own first stop, never at its creator's
 * fork event: the tracer may take the new task's stops, even its exit, before
 * that event (waitid reports the newest tracees first), and an entry made
 * then would outlive the task and hand its tid, once reused by another
 * group's task, to the wrong group. The task belongs with its process or its
 * parent, else (CLONE_PARENT from a spawn's command, or a parent that has
 * exited: the parent is then the untraced init) with its pid namespace,
 * every spawn has its own. */
static struct gov_tracee *adopt(struct gov_tracer *tr, int tid)
{
    struct gov_tracee *kin = find(tr, (int)gov_task_status(tid, "\nTgid:"));
    if (!kin)
        kin = find(tr, (int)gov_task_status(tid, "\nPPid:"));
    if (kin)
        return add(tr, tid, kin->group, kin->backend);
    uint64_t ino = pidns_of(tid);
    for (int i = 0; ino && i < tr->nns; i++)
        if (tr->ns[i].ino == ino)
            return add(tr, tid, tr->ns[i].group, tr->ns[i].backend);
    return NULL; /* no group to govern it: the caller kills it */
}

static void note_ns(struct gov_tracer *tr, int pid, int group, int backend)
{
    uint64_t ino = pidns_of(pid);
    int i = 0;
    while (i < tr->nns && tr->ns[i].ino != ino)
        i++;
    if (i == MAX_NS)
        i = (int)(ino % MAX_NS); /* full: forget an old one */
    else if (i == tr->nns)
        tr->nns++;
    tr->ns[i].ino = ino;
    tr->ns[i].group = group;
    tr->ns[i].backend = backend;
}

/* ---- resuming ---- */

static void resume(struct gov_tracee *t, int sig)
{
    int step = t->backend == GOV_BACKEND_PTRACE_SYSCALL || t->at_exit || t->restart;
    ptrace(step ? PTRACE_SYSCALL : PTRACE_CONT, t->tid, 0, (long)sig);
}

/* The stopped call does not run and returns ret. */
static void skip(struct gov_tracee *t, int64_t ret)
{
    ptrace(PTRACE_POKEUSER, t->tid, ORIG_RAX, -1L);
    ptrace(PTRACE_POKEUSER, t->tid, RAX, (long)ret);
}

static void answer_now(struct gov_tracee *t, int how, int64_t ret)
{
    if (how == GOV_TR_DENY) {
        skip(t, ret);
    } else if (how == GOV_TR_INTERRUPT) {
        skip(t, -EINTR);
        t->restart = (int)ret;
    }
    resume(t, 0);
}

void gov_tracer_answer(struct gov_tracer *tr, struct gov_tracee *t, int how, int64_t ret)
{
    if (pthread_equal(pthread_self(), tr->thread)) {
        answer_now(t, how, ret);
        return;
    }
    struct queued *q = Q(t);
    q->how = how;
    q->ret = ret;
    if (!q->queued) {
        q->queued = 1;
        q->next_answer = NULL;
        *tr->answers_tail = t;
        tr->answers_tail = &q->next_answer;
    }
    kick(tr);
}

/* ---- stops ---- */

static int get_info(int tid, struct __ptrace_syscall_info *info)
{
    return ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof *info, info) > 0 ? 0 : -1;
}

/* A syscall stop: the exit of a call we skipped or charge at exit, or (under
 * ptrace-syscall) the entry or exit of any call. */
static void syscall_stop(struct gov_tracer *tr, struct gov_tracee *t)
{
    if (t->restart) {
        /* Put the call back and let the kernel's signal code decide, by the
         * restart code the engine chose. */
        ptrace(PTRACE_POKEUSER, t->tid, ORIG_RAX, (long)t->nr);
        ptrace(PTRACE_POKEUSER, t->tid, RAX, -(long)t->restart);
        t->restart = 0;
        resume(t, 0);
        return;
    }
    struct __ptrace_syscall_info info;
    if (get_info(t->tid, &info) < 0)
        return; /* killed meanwhile: its exit comes next */
    if (info.op == PTRACE_SYSCALL_INFO_EXIT && t->at_exit) {
        t->at_exit = 0;
        gov_engine_traced_exit(tr->e, t, info.exit.rval);
    } else if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
        t->nr = (int)info.entry.nr;
        if (gov_engine_traced_call(tr->e, t, info.arch, t->nr, info.entry.args))
            return;
    }
    resume(t, 0);
}

static void seccomp_stop(struct gov_tracer *tr, struct gov_tracee *t)
{
    struct __ptrace_syscall_info info;
    if (get_info(t->tid, &info) < 0)
        return;
    t->nr = (int)info.seccomp.nr;
    if (!gov_engine_traced_call(tr->e, t, info.arch, t->nr, info.seccomp.args))
        resume(t, 0);
}

static void on_stop(struct gov_tracer *tr, int tid, int st)
{
    struct gov_tracee *t = find(tr, tid);
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
        if (t)
            forget(tr, t);
        return;
    }
    if (!WIFSTOPPED(st))
        return;
    if (!t && !(t = adopt(tr, tid))) {
        syscall(SYS_tgkill, tid, tid, SIGKILL); /* cannot follow it: fail closed */
        return;
    }
    int sig = WSTOPSIG(st), ev = st >> 16;
    unsigned long msg = 0;
    if (ev == PTRACE_EVENT_SECCOMP) {
        seccomp_stop(tr, t);
        return;
    }
    if (sig == (SIGTRAP | 0x80)) {
        syscall_stop(tr, t);
        return;
    }
    switch (ev) {
    case PTRACE_EVENT_STOP:
        if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
            /* A group-stop: stay stopped, and let the real parent see it. */
            ptrace(PTRACE_LISTEN, tid, 0, 0);
            return;
        }
        resume(t, 0); /* a new task's first stop, or our interrupt */
        return;
    case PTRACE_EVENT_EXEC:
        /* A thread that is not the leader took the leader's tid: the
         * leader, killed by the exec, held no call any more; the entry now
         * stands for the thread, which is in execve and in no other call. */
        if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &msg) == 0 && (int)msg != tid) {
            struct gov_tracee *former = find(tr, (int)msg);
            if (former)
                forget(tr, former);
            gov_engine_traced_gone(tr->e, t);
            t->restart = t->at_exit = 0;
        }
        resume(t, 0);
        return;
    case 0:
        resume(t, sig); /* a signal for the tracee: deliver it */
        return;
    default:
        resume(t, 0);
    }
}

/* ---- the thread ---- */

static int seize(struct gov_tracer *tr, struct attach *a)
{
    long opts = PTRACE_O_EXITKILL | PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK |
                PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
                PTRACE_O_TRACESYSGOOD;
    if (gov_fault(EPERM) < 0 || ptrace(PTRACE_SEIZE, a->pid, 0, opts) < 0)
        return -errno;
    if (!add(tr, a->pid, a->group, a->backend)) {
        ptrace(PTRACE_DETACH, a->pid, 0, 0);
        return -ENOMEM;
    }
    note_ns(tr, a->pid, a->group, a->backend);
    /* PTRACE_SYSCALL needs a stop to start from. */
    if (a->backend == GOV_BACKEND_PTRACE_SYSCALL)
        ptrace(PTRACE_INTERRUPT, a->pid, 0, 0);
    return 0;
}

static void run_requests(struct gov_tracer *tr)
{
    __atomic_store_n(&tr->pending, 0, __ATOMIC_SEQ_CST);
    while (tr->attaches) {
        struct attach *a = tr->attaches;
        tr->attaches = a->next;
        a->rc = seize(tr, a);
        pthread_cond_broadcast(&tr->done);
    }
    while (tr->answers) {
        struct gov_tracee *t = tr->answers;
        tr->answers = Q(t)->next_answer;
        Q(t)->queued = 0;
        answer_now(t, Q(t)->how, Q(t)->ret);
    }
    tr->answers_tail = &tr->answers;
}

/* waitpid(2)'s status word from waitid(2)'s siginfo: for a ptrace stop
 * si_status is the whole stop code, (event << 8) | signal. */
static int wait_status(const siginfo_t *si)
{
    switch (si->si_code) {
    case CLD_EXITED:
        return (si->si_status & 0xff) << 8;
    case CLD_KILLED:
        return si->si_status & 0x7f;
    case CLD_DUMPED:
        return (si->si_status & 0x7f) | 0x80;
    default: /* CLD_TRAPPED, CLD_STOPPED */
        return (si->si_status << 8) | 0x7f;
    }
}

/* Handles every stop that is waiting now, in one round: the one the blocking
 * wait took, then all the others, collected before any is handled. waitid
 * reports the newest tracees first, so taking one stop at a time would serve
 * a busy group's young tasks for ever before an old task's stop (a group's
 * first process, whose fork is its only way to make children). The engine's
 * mutex is taken per stop, as before rounds: the engine thread's own calls
 * wait for one stop, never for a round. */
static void handle_round(struct gov_tracer *tr)
{
    struct {
        int pid, status;
    } round[ROUND_MAX];
    int n = 0;
    round[n].pid = tr->si.si_pid;
    round[n++].status = wait_status(&tr->si);
    tr->si.si_pid = 0;
    while (n < ROUND_MAX) {
        siginfo_t si;
        si.si_pid = 0;
        if (syscall(SYS_waitid, P_ALL, 0, &si, WEXITED | WSTOPPED | WNOHANG | __WALL | __WNOTHREAD,
                    NULL) < 0 || si.si_pid == 0)
            break;
        round[n].pid = si.si_pid;
        round[n++].status = wait_status(&si);
    }
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(tr->mu);
        on_stop(tr, round[i].pid, round[i].status);
        pthread_mutex_unlock(tr->mu);
    }
}

static void *tracer_main(void *arg)
{
    struct gov_tracer *tr = arg;
    /* Only the wake-up and SIGCHLD: at SIG_DFL the kernel then drops the
     * SIGCHLD of each tracee stop at once. */
    sigset_t mask;
    sigfillset(&mask);
    sigdelset(&mask, GOV_TRACE_WAKE_SIG);
    sigdelset(&mask, SIGCHLD);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    pthread_mutex_lock(tr->mu);
    tr->tid = (pid_t)syscall(SYS_gettid);
    tr->started = 1;
    pthread_cond_broadcast(&tr->done);
    pthread_mutex_unlock(tr->mu);
    in_window = 0;
    sigsetjmp(wake_jb, 1);
    for (;;) {
        in_window = 0;
        if (__atomic_load_n(&tr->si.si_pid, __ATOMIC_RELAXED))
            handle_round(tr);
        pthread_mutex_lock(tr->mu);
        run_requests(tr);
        int stop = tr->stop;
        pthread_mutex_unlock(tr->mu);
        if (stop)
            return NULL;
        in_window = 1;
        if (__atomic_load_n(&tr->pending, __ATOMIC_SEQ_CST))
            continue;
        /* The kernel writes tr->si even when the wait fails (si_pid 0).
         * Raw calls: glibc's wrappers are cancellation points, which a jump
         * out of them would leave in asynchronous cancellation. */
        if (syscall(SYS_waitid, P_ALL, 0, &tr->si, WEXITED | WSTOPPED | __WALL | __WNOTHREAD,
                    NULL) < 0 && errno == ECHILD)
            syscall(SYS_pause); /* no tracee yet: until the next wake-up */
    }
}

int gov_tracer_new(struct gov_tracer **out, struct gov_engine *e, pthread_mutex_t *mu)
{
    struct gov_tracer *tr = calloc(1, sizeof *tr);
    if (!tr)
        return -ENOMEM;
    tr->e = e;
    tr->mu = mu;
    tr->answers_tail = &tr->answers;
    pthread_cond_init(&tr->done, NULL);
    struct sigaction sa = {.sa_handler = on_wake}; /* no SA_RESTART: waitid fails EINTR */
    sigemptyset(&sa.sa_mask);
    int rc = sigaction(GOV_TRACE_WAKE_SIG, &sa, NULL) < 0 ? -errno : 0;
    if (rc == 0)
        rc = -pthread_create(&tr->thread, NULL, tracer_main, tr);
    if (rc < 0) {
        pthread_cond_destroy(&tr->done);
        free(tr);
        return rc;
    }
    while (!tr->started) /* its tid, for the wake-ups */
        pthread_cond_wait(&tr->done, mu);
    *out = tr;
    return 0;
}

void gov_tracer_stop(struct gov_tracer *tr)
{
    if (tr->stopped)
        return;
    pthread_mutex_lock(tr->mu);
    tr->stop = 1;
    kick(tr);
    pthread_mutex_unlock(tr->mu);
    pthread_join(tr->thread, NULL);
    tr->stopped = 1;
}

void gov_tracer_free(struct gov_tracer *tr)
{
    gov_tracer_stop(tr);
    for (int i = 0; i < BUCKETS; i++)
        while (tr->tab[i]) {
            struct gov_tracee *t = tr->tab[i];
            tr->tab[i] = t->next;
            free(Q(t));
        }
    pthread_cond_destroy(&tr->done);
    free(tr);
}

int gov_tracer_attach(struct gov_tracer *tr, int pid, int group, int backend)
{
    struct attach a = {.pid = pid, .group = group, .backend = backend, .rc = 1,
                       .next = tr->attaches};
    tr->attaches = &a;
    kick(tr);
    while (a.rc == 1)
        pthread_cond_wait(&tr->done, tr->mu);
    return a.rc;
}
