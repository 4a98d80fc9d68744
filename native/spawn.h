/* Starting a group's first command. Only C runs between fork and exec.
 *
 *   supervisor ── clone(CLONE_NEWPID) ──> init shim (pid 1 of the group's pid
 *                                         namespace: reaps orphans; when it
 *                                         exits the kernel kills the group;
 *                                         a mount namespace whose /proc is
 *                                         the group's own)
 *                                           └── fork ──> command: installs the
 *                                               seccomp filter, waits until
 *                                               the supervisor has taken the
 *                                               listener fd, then execve.
 *
 * The listener crosses over with pidfd_getfd(2), not SCM_RIGHTS: once the
 * filter is in place, a sendmsg() from the command would itself wait for a
 * supervisor that does not have the listener yet. So the command signals
 * "filter installed" through a futex on a shared page and waits for "go" in
 * poll(2): calls that no filter of ours ever notifies (close is notified).
 *
 * With a container (native/container.h) the init is cloned into new pid,
 * mount, uts, ipc and net namespaces, sets up the root file system and
 * pivots into it; the command unshares a user namespace that the init maps
 * onto the container's uid range, and becomes container root.
 *
 * Paused (req->paused, and always in trace mode): gov_spawn returns with the
 * command waiting for "go", filter installed, so that the caller can attach
 * a tracer (the ptrace backends: no listener then) or set up the container's
 * network first; gov_spawn_go() lets it exec. */
#ifndef GOV_SPAWN_H
#define GOV_SPAWN_H

struct gov_container;

struct gov_spawn_req {
    const char *path;          /* executable, already resolved */
    char *const *argv;
    char *const *envp;
    const char *cwd;           /* NULL: inherit */
    const void *filter;        /* struct sock_filter[] from gov_filter_build */
    int filter_len;            /* bytes */
    int timeout_ms;            /* for the handshake */
    int stdio[3];              /* fds to become 0, 1, 2; -1: inherit */
    const struct gov_container *container;  /* NULL: no container */
    int paused;                /* return before the command execs: gov_spawn_go() */
    int trace;                 /* ptrace backends: no listener; implies paused */
};

struct gov_spawn_res {
    int init_pid;    /* host pid of the shim, pid 1 of the group */
    int cmd_pid;     /* host pid of the command */
    int listener;    /* seccomp listener, O_CLOEXEC; -1 in trace mode */
    int status_fd;   /* yields the command's wait status (an int), then EOF */
    int exec_fd;     /* yields errno of a failed execve (an int), or EOF once it ran */
    int go_fd;       /* paused: write end that releases the command; else -1 */
    int fail_step;   /* on failure, where a container's set-up failed (GOV_STEP_*) */
};

/* 0 or -errno. On failure nothing is left: no process, no fd. With
 * req->paused the command waits, filter installed and listener taken, until
 * gov_spawn_go(); killing init_pid instead abandons it. */
int gov_spawn(const struct gov_spawn_req *req, struct gov_spawn_res *res);

/* Lets a paused command exec (go = 1) or exit 127 (go = 0); closes
 * res->go_fd. 0 or -errno. */
int gov_spawn_go(struct gov_spawn_res *res, int go);

#endif
