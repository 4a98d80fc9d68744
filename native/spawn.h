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
 * poll(2): calls that no filter of ours ever notifies.
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

#include <stdint.h>

struct gov_container;

struct gov_rlimit {
    int resource;                  /* RLIMIT_* */
    uint64_t soft, hard;
};

/* Who the command runs as, in the container (or on the host): applied
 * between fork and exec, in this order: oom_score_adj, rlimits, the
 * console, no_new_privs, the seccomp filter, the bounding set, ids,
 * capabilities, the working directory. */
struct gov_process {
    int set_oom;
    int oom_score_adj;
    int nrlimits;
    const struct gov_rlimit *rlimits;
    int console_fd;                /* >= 0: a connected unix socket; the command makes a
                                      pty, sends its master over it (SCM_RIGHTS) and takes
                                      the slave as its terminal and as each std fd whose
                                      bit (1 << fd) is set in console_stdio */
    int console_stdio;
    int no_new_privs;
    int drop_bounding;             /* drop every capability not in cap_bounding */
    uint64_t cap_bounding;
    int set_ids;
    unsigned int uid, gid;
    int ngroups;
    const unsigned int *groups;
    int set_caps;                  /* set these sets (and raise the ambient ones) */
    uint64_t cap_effective, cap_permitted, cap_inheritable, cap_ambient;
};

struct gov_spawn_req {
    const char *path;          /* executable, already resolved */
    char *const *argv;
    char *const *envp;
    const char *cwd;           /* NULL: inherit */
    const char *search_path;   /* non-NULL: a PATH; a path without '/' is looked up there
                                  inside the container (after its mounts, as the user),
                                  as execvp(3) would; not found: GOV_STEP_FIND_PROGRAM */
    const void *filter;        /* struct sock_filter[] from gov_filter_build */
    int filter_len;            /* bytes */
    int timeout_ms;            /* for the handshake */
    int stdio[3];              /* fds to become 0, 1, 2; -1: inherit */
    const struct gov_container *container;  /* NULL: no container */
    const struct gov_process *process;      /* NULL: as the caller, with no_new_privs */
    int detached;              /* the init outlives the caller: no PDEATHSIG; it passes
                                  signals on to the command and exits with its status
                                  (128+N for signal N), as an OCI container's pid does */
    int lifeline;              /* detached, >= 0: the read end of a pipe; when its write end closes
                                  (the supervisor died) the init kills the command */
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
    int fail_index;  /* and which mount, device, sysctl or path (-1: none) */
};

/* 0 or -errno. On failure nothing is left: no process, no fd. With
 * req->paused the command waits, filter installed and listener taken, until
 * gov_spawn_go(); killing init_pid instead abandons it. */
int gov_spawn(const struct gov_spawn_req *req, struct gov_spawn_res *res);

/* Lets a paused command exec (go = 1) or exit 127 (go = 0); closes
 * res->go_fd. 0 or -errno. */
int gov_spawn_go(struct gov_spawn_res *res, int go);

#endif
