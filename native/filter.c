#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mman.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <sys/ioctl.h>

#include "filter.h"

/* Which syscalls each limit needs to see. NULL-terminated. */
static const char *const net_send_calls[] = {
    "write", "writev", "sendto", "sendmsg", "sendmmsg", "sendfile", "splice", NULL};
static const char *const net_recv_calls[] = {
    "read", "readv", "recvfrom", "recvmsg", "recvmmsg", "splice", NULL};
static const char *const disk_write_calls[] = {
    "write", "writev", "pwrite64", "pwritev", "pwritev2", "sendfile", "splice",
    "copy_file_range", NULL};
static const char *const disk_read_calls[] = {
    "read", "readv", "pread64", "preadv", "preadv2", "sendfile", "splice",
    "copy_file_range", NULL};
static const char *const process_calls[] = {"clone", "clone3", "fork", "vfork", NULL};
static const char *const memory_calls[] = {"mmap", "mremap", "brk", "mprotect", NULL};
/* Calls that may grow what a group stores (charged), or give space back
 * (they mark the count dirty). */
static const char *const disk_space_calls[] = {
    "write", "writev", "pwrite64", "pwritev", "pwritev2", "sendfile", "splice",
    "copy_file_range", "ftruncate", "truncate", "fallocate", "mkdir", "mkdirat",
    "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2", NULL};
/* Calls that change what an fd number names: they keep the engine's cache of
 * fd kinds honest (classify.h), so they come with every limit on writes
 * (disk_space included: a write to a pipe then needs no look at the fd). */
static const char *const fd_table_calls[] = {
    "close", "close_range", "dup2", "dup3", "execve", "execveat",
    "clone", "clone3", "fork", "vfork", NULL};

static const char *const *const calls_of[GOV_NRES] = {
    [GOV_NET_SEND] = net_send_calls,
    [GOV_NET_RECV] = net_recv_calls,
    [GOV_DISK_WRITE] = disk_write_calls,
    [GOV_DISK_READ] = disk_read_calls,
    [GOV_PROCESSES] = process_calls,
    [GOV_MEMORY] = memory_calls,
    [GOV_DISK_SPACE] = disk_space_calls,
};

/* io_uring moves bytes without system calls: refuse it as a kernel without
 * io_uring would, so programs fall back to ordinary calls. */
static const char *const refused_calls[] = {
    "io_uring_setup", "io_uring_enter", "io_uring_register", NULL};
/* A CPU-capped group runs under SCHED_DEADLINE reservations (cpu.h) that its
 * tasks must not replace. */
static const char *const sched_calls[] = {
    "sched_setattr", "sched_setscheduler", "sched_setparam", NULL};

/* A container binds only addresses of its own network namespace: the
 * options that let a socket bind an address it does not have get EPERM.
 * Compared on the registers, so there is no pointer to race. */
static const struct {
    int level, opt;
} nonlocal_bind_opts[] = {
    {IPPROTO_IP, IP_FREEBIND},
    {IPPROTO_IP, IP_TRANSPARENT},
    {IPPROTO_IPV6, IPV6_FREEBIND},
    {IPPROTO_IPV6, IPV6_TRANSPARENT},
};

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return -EINVAL;
    int rc = seccomp_rule_add(ctx, action, nr, 0);
    /* -EEXIST: the same call is needed by two limits. */
    return rc == -EEXIST ? 0 : rc;
}

/* A container shares the terminal of `governor run`: TIOCSTI (and a
 * console's TIOCLINUX) would let container root type commands into the
 * host's shell. The kernel reads the request as an unsigned int, so only
 * its low 32 bits are compared. */
static int refuse_terminal_input(scmp_filter_ctx ctx)
{
    static const unsigned long requests[] = {TIOCSTI, TIOCLINUX};
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, requests[i]));
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Calls f(ctx, arg, name) for every call the limits govern; stops at the
 * first error. */
static int for_governed(const struct gov_limits *lim, void *ctx, uint32_t arg,
                        int (*f)(void *, uint32_t, const char *))
{
    int rc;
    for (int r = 0; r < GOV_NRES; r++) {
        if (!lim->r[r].set)
            continue;
        for (const char *const *n = calls_of[r]; *n; n++)
            if ((rc = f(ctx, arg, *n)) < 0)
                return rc;
    }
    if (lim->r[GOV_NET_SEND].set || lim->r[GOV_DISK_WRITE].set || lim->r[GOV_DISK_SPACE].set)
        for (const char *const *n = fd_table_calls; *n; n++)
            if ((rc = f(ctx, arg, *n)) < 0)
                return rc;
    return 0;
}

/* A governed call under the ptrace backend: clone is traced only without
 * CLONE_UNTRACED (with it: EPERM, a rule of its own), clone3 not at all
 * (ENOSYS). The flag test is on the register: no TOCTOU. */
static int add_traced(void *ctx, uint32_t action, const char *name)
{
    if (strcmp(name, "clone3") == 0)
        return 0;
    if (strcmp(name, "clone") != 0)
        return add_rule(ctx, action, name);
    int rc = seccomp_rule_add(ctx, action, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_UNTRACED, 0));
    return rc == -EEXIST ? 0 : rc;
}

static int set_governed(void *map, uint32_t size, const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr >= 0 && nr < (int)size)
        ((unsigned char *)map)[nr] = 1;
    return 0;
}

void gov_filter_governed(const struct gov_limits *lim, unsigned char *map, int size)
{
    memset(map, 0, (size_t)size);
    for_governed(lim, map, (uint32_t)size, set_governed);
}

/* What keeps a tracee traced (see filter.h). */
static int add_untraceable(scmp_filter_ctx ctx)
{
    int rc;
    if ((rc = add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "ptrace")) < 0 ||
        (rc = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3")) < 0)
        return rc;
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_UNTRACED, CLONE_UNTRACED));
    return rc == -EEXIST ? 0 : rc;
}

/* What a container may not do (gov.h): type into the terminal it shares,
 * bind an address it does not have. */
static int add_container_rules(scmp_filter_ctx ctx)
{
    int rc = refuse_terminal_input(ctx);
    for (size_t i = 0; rc == 0 && i < sizeof nonlocal_bind_opts / sizeof nonlocal_bind_opts[0];
         i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setsockopt), 2,
                              SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)nonlocal_bind_opts[i].level),
                              SCMP_A2(SCMP_CMP_EQ, (scmp_datum_t)nonlocal_bind_opts[i].opt));
    /* i386 socketcall passes its arguments in memory, where no filter can
     * see the option: refused, as a kernel without it would. */
    if (rc == 0)
        rc = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "socketcall");
    return rc;
}

int gov_filter_build(const struct gov_limits *lim, int backend, void *buf, size_t size)
{
    int rc, memfd = -1;
    if (backend < GOV_BACKEND_SECCOMP || backend > GOV_BACKEND_PTRACE_SYSCALL)
        return -EINVAL;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return -ENOMEM;
    /* A 64-bit process can enter the i386 and x32 tables too: the governed
     * calls notify there as well, and the engine refuses them. */
    if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X86)) < 0 && rc != -EEXIST)
        goto out;
    if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X32)) < 0 && rc != -EEXIST)
        goto out;
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        goto out;
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
        goto out;
    if (backend == GOV_BACKEND_SECCOMP)
        rc = for_governed(lim, ctx, SCMP_ACT_NOTIFY, add_rule);
    else if (backend == GOV_BACKEND_PTRACE)
        rc = for_governed(lim, ctx, SCMP_ACT_TRACE(0), add_traced);
    if (rc < 0 || (backend != GOV_BACKEND_SECCOMP && (rc = add_untraceable(ctx)) < 0))
        goto out;
    for (const char *const *n = refused_calls; *n; n++)
        if ((rc = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), *n)) < 0)
            goto out;
    for (const char *const *n = sched_calls; lim->fixed_sched && *n; n++)
        if ((rc = add_rule(ctx, SCMP_ACT_ERRNO(EPERM), *n)) < 0)
            goto out;
    if (lim->container && (rc = add_container_rules(ctx)) < 0)
        goto out;

    /* libseccomp 2.5 exports only to an fd. */
    memfd = memfd_create("gov-filter", MFD_CLOEXEC);
    if (memfd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = seccomp_export_bpf(ctx, memfd)) < 0)
        goto out;
    off_t len = lseek(memfd, 0, SEEK_END);
    if (len < 0 || (size_t)len > size) {
        rc = len < 0 ? -errno : -ENOSPC;
        goto out;
    }
    ssize_t got = pread(memfd, buf, (size_t)len, 0);
    rc = got == len ? (int)len : -EIO;
out:
    if (memfd >= 0)
        close(memfd);
    seccomp_release(ctx);
    return rc;
}
