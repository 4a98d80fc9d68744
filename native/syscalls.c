/* The governed calls (syscalls.h): one row each, at its x86_64 number. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "syscalls.h"

_Static_assert(GOV_X32_BIT == __X32_SYSCALL_BIT, "GOV_X32_BIT is the kernel's");

#define R(res) (1u << GOV_##res)
#define AREA (R(DISK_SPACE) | R(DISK_INODES))
#define WRITES (R(DISK_WRITE) | R(MEMORY) | AREA)  /* a write to a file */
#define MASKED(arg, bits) {arg, GOV_CMP_MASKED_EQ, bits, bits}

/* A row: what is not given is none (-1) or 0. */
#pragma GCC diagnostic ignored "-Woverride-init"
#define CALL(nm, ...)                                                                      \
    [SYS_##nm] = {.name = #nm, .nr = SYS_##nm, .fd = -1, .fd_in = -1, .dirfd = -1, .path = -1, \
                  .open_flags = -1, __VA_ARGS__}
/* A call that adds a name in the area: its directory fd and path arguments. */
#define NAMING(nm, dir, at, more) \
    CALL(nm, .always = AREA, .dirfd = dir, .path = at, .flags = GOV_SYS_ADDS_NAME | (more))

static const struct gov_syscall calls[GOV_NR_SYSCALLS] = {
    /* Writes. A thread's writes are settled at its next call (iowrite.h). */
    CALL(write, .always = R(NET_SEND) | WRITES, .fd = 0, .flags = GOV_SYS_MAY_DIRTY),
    CALL(writev, .always = R(NET_SEND) | WRITES, .fd = 0,
         .flags = GOV_SYS_IOVEC_WRITE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(pwrite64, .always = WRITES, .fd = 0, .flags = GOV_SYS_MAY_DIRTY),
    CALL(pwritev, .always = WRITES, .fd = 0,
         .flags = GOV_SYS_IOVEC_WRITE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(pwritev2, .always = WRITES, .fd = 0,
         .flags = GOV_SYS_IOVEC_WRITE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(sendto, .always = R(NET_SEND), .fd = 0),
    /* sendmsg and sendmmsg may not pass fds in a group with a disk area
     * (classify.c). */
    CALL(sendmsg, .always = R(NET_SEND) | AREA, .fd = 0, .flags = GOV_SYS_AT_EXIT),
    CALL(sendmmsg, .always = R(NET_SEND) | AREA, .fd = 0),
    /* Reads: charged what they return. */
    CALL(read, .always = R(NET_RECV) | R(DISK_READ), .fd = 0,
         .flags = GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(readv, .always = R(NET_RECV) | R(DISK_READ), .fd = 0,
         .flags = GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(pread64, .always = R(DISK_READ), .fd = 0, .flags = GOV_SYS_AT_EXIT),
    CALL(preadv, .always = R(DISK_READ), .fd = 0, .flags = GOV_SYS_AT_EXIT),
    CALL(preadv2, .always = R(DISK_READ), .fd = 0, .flags = GOV_SYS_AT_EXIT),
    CALL(recvfrom, .always = R(NET_RECV), .fd = 0, .flags = GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(recvmsg, .always = R(NET_RECV), .fd = 0, .flags = GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(recvmmsg, .always = R(NET_RECV), .fd = 0, .flags = GOV_SYS_RECEIVE),
    /* Transfers charge both ends. */
    CALL(sendfile, .always = R(NET_SEND) | R(DISK_READ) | WRITES, .fd = 0, .fd_in = 1,
         .flags = GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(splice, .always = R(NET_SEND) | R(NET_RECV) | R(DISK_READ) | WRITES, .fd = 2, .fd_in = 0,
         .flags = GOV_SYS_RECEIVE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(copy_file_range, .always = R(DISK_READ) | WRITES, .fd = 2, .fd_in = 0,
         .flags = GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    /* Tasks. */
    CALL(clone, .always = R(PROCESSES), .flags = GOV_SYS_CLONE),
    CALL(clone3, .always = R(PROCESSES), .flags = GOV_SYS_CLONE),
    CALL(fork, .always = R(PROCESSES), .flags = GOV_SYS_CLONE),
    CALL(vfork, .always = R(PROCESSES), .flags = GOV_SYS_CLONE),
    /* Memory grows by mappings, SysV segments, files in memory (memfd,
     * tmpfs) growing (writes and resizes are looked at for those), new pipes
     * and unix sockets, and larger send buffers (shmem.h). Shared mappings
     * of files move bytes with no call (classify.c charge_shared_map): with
     * disk_write, mmap stops when MAP_SHARED is set (a bit of the register,
     * which MAP_SHARED_VALIDATE sets too) and mremap always (whether it
     * grows a shared mapping is in the tenant's maps). */
    CALL(mmap, .always = R(MEMORY), .when = R(DISK_WRITE), .ncond = 1,
         .cond = {{1, {MASKED(3, MAP_SHARED)}}}, .fd = 4),
    CALL(mremap, .always = R(MEMORY) | R(DISK_WRITE)),
    CALL(brk, .always = R(MEMORY)),
    CALL(mprotect, .always = R(MEMORY)),
    CALL(shmget, .always = R(MEMORY)),
    CALL(pipe, .always = R(MEMORY)),
    CALL(pipe2, .always = R(MEMORY)),
    CALL(socketpair, .always = R(MEMORY)),
    CALL(accept, .always = R(MEMORY), .fd = 0),
    CALL(accept4, .always = R(MEMORY), .fd = 0),
    /* Compared on the registers (a container's profile has its own rules
     * on socket; whole, the two would not combine). */
    CALL(socket, .when = R(MEMORY), .ncond = 1, .cond = {{1, {{0, GOV_CMP_EQ, AF_UNIX, 0}}}}),
    CALL(setsockopt, .when = R(MEMORY), .ncond = 2,
         .cond = {{2, {{1, GOV_CMP_EQ, SOL_SOCKET, 0}, {2, GOV_CMP_EQ, SO_SNDBUF, 0}}},
                  {2, {{1, GOV_CMP_EQ, SOL_SOCKET, 0}, {2, GOV_CMP_EQ, SO_SNDBUFFORCE, 0}}}},
         .fd = 0),
    /* Calls that may grow what a group stores in its area (disk_space,
     * disk_inodes: charged), or give space back (they mark the count
     * dirty); resizes grow files in memory too. */
    CALL(ftruncate, .always = R(MEMORY) | AREA, .fd = 0),
    CALL(truncate, .always = R(MEMORY) | AREA, .path = 0),
    CALL(fallocate, .always = R(MEMORY) | AREA, .fd = 0),
    CALL(unlink, .always = AREA),
    CALL(unlinkat, .always = AREA),
    CALL(rmdir, .always = AREA),
    CALL(setxattr, .always = AREA, .path = 0),
    CALL(lsetxattr, .always = AREA, .path = 0),
    CALL(fsetxattr, .always = AREA, .fd = 0),
    CALL(removexattr, .always = AREA),
    CALL(lremovexattr, .always = AREA),
    CALL(fremovexattr, .always = AREA),
    CALL(bind, .always = AREA), /* a unix socket's path is a new inode */
    CALL(openat2, .always = AREA, .dirfd = 0, .path = 1), /* its flags are in memory */
    NAMING(rename, -1, 1, GOV_SYS_REPLACES),
    NAMING(renameat, 2, 3, GOV_SYS_REPLACES),
    NAMING(renameat2, 2, 3, GOV_SYS_REPLACES),
    NAMING(link, -1, 1, 0),
    NAMING(linkat, 2, 3, 0),
    NAMING(symlink, -1, 1, GOV_SYS_NEW_INODE),
    NAMING(symlinkat, 1, 2, GOV_SYS_NEW_INODE),
    NAMING(mknod, -1, 0, GOV_SYS_NEW_INODE),
    NAMING(mknodat, 0, 1, GOV_SYS_NEW_INODE),
    NAMING(mkdir, -1, 0, GOV_SYS_NEW_INODE),
    NAMING(mkdirat, 0, 1, GOV_SYS_NEW_INODE),
    CALL(creat, .always = AREA, .path = 0, .flags = GOV_SYS_OPEN),
    /* ... and open and openat when they may create a file: O_CREAT,
     * O_TMPFILE (compared on the register). */
    CALL(open, .when = AREA, .ncond = 2,
         .cond = {{1, {MASKED(1, O_CREAT)}}, {1, {MASKED(1, __O_TMPFILE)}}},
         .path = 0, .open_flags = 1, .flags = GOV_SYS_OPEN),
    CALL(openat, .when = AREA, .ncond = 2,
         .cond = {{1, {MASKED(2, O_CREAT)}}, {1, {MASKED(2, __O_TMPFILE)}}},
         .dirfd = 0, .path = 1, .open_flags = 2, .flags = GOV_SYS_OPEN),
    /* A thread's writes are settled when it next calls in (iowrite.h): its
     * exit is such a call too. */
    CALL(exit, .always = R(NET_SEND) | R(DISK_WRITE) | AREA, .flags = GOV_SYS_EXIT),
    CALL(exit_group, .always = R(NET_SEND) | R(DISK_WRITE) | AREA, .flags = GOV_SYS_EXIT),
};

const struct gov_syscall *gov_syscall_of(int nr)
{
    return nr >= 0 && nr < GOV_NR_SYSCALLS && calls[nr].name ? &calls[nr] : NULL;
}

unsigned gov_syscall_flags(int nr)
{
    const struct gov_syscall *c = gov_syscall_of(nr);
    return c ? c->flags : 0;
}

int gov_syscall_number(const char *name, int compat)
{
    int nr = seccomp_syscall_resolve_name_arch(compat ? SCMP_ARCH_X86 : SCMP_ARCH_X86_64, name);
    return nr < 0 ? -ENOENT : nr;
}

int gov_syscall_name(int nr, int compat, char *buf, size_t size)
{
    int x32 = nr >= 0 && (nr & GOV_X32_BIT);
    if (x32)
        nr &= ~GOV_X32_BIT;
    char *name = seccomp_syscall_resolve_num_arch(compat && !x32 ? SCMP_ARCH_X86 : SCMP_ARCH_X86_64,
                                                  nr);
    int n = name ? snprintf(buf, size, "%s%s", x32 ? "x32 " : "", name)
                 : snprintf(buf, size, "%s%d", x32 ? "x32 " : "", nr);
    free(name);
    return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}
