/* The governed system calls, each described once: its name and x86_64
 * number, the limits that make the filter stop it (for every call, or only
 * for calls whose arguments match a condition compared on the registers),
 * the arguments that name the fds it moves bytes through, and what the
 * engine must know of it (GOV_SYS_*). filter.c builds the governor's rules
 * from it, classify.c takes the fd arguments from it, the engine the flags,
 * and Python reads it through the cdef. Names of calls come from
 * libseccomp's tables, for logs as for rules. */
#ifndef GOV_SYSCALLS_H
#define GOV_SYSCALLS_H

#include <stddef.h>
#include "filter.h"

enum {
    GOV_NR_SYSCALLS = 512,       /* above every x86_64 call number */
    GOV_X32_BIT = 0x40000000,    /* the x32 table's calls: the x86_64 number with this bit */
};

/* What the engine must know of a call besides its charge. */
enum {
    GOV_SYS_RECEIVE = 1,      /* may wait for data: classified again at release */
    GOV_SYS_AT_EXIT = 2,      /* ptrace: charged what it returned, at its exit stop */
    GOV_SYS_IOVEC_WRITE = 4,  /* its size is read from iovecs (iowrite.h GOV_IOW_WROTE) */
    GOV_SYS_MAY_DIRTY = 8,    /* may dirty page cache (iowrite.h GOV_IOW_DIRTIED) */
    GOV_SYS_CLONE = 16,       /* creates a task (with trace_clones: RET_TRACE) */
    GOV_SYS_EXIT = 32,        /* ends its thread: its writes are settled */
    GOV_SYS_ADDS_NAME = 64,   /* adds a name to a directory (disk_space) */
    GOV_SYS_NEW_INODE = 128,  /* ... and an inode */
    GOV_SYS_REPLACES = 256,   /* ... and may replace a file: recounted */
    GOV_SYS_OPEN = 512,       /* an open (flags in open_flags): a new inode with O_CREAT or
                                 O_TMPFILE */
};

/* A condition on the registers: all its comparisons hold. */
struct gov_syscall_cond {
    int ncmp;
    struct gov_arg_cmp cmp[2];
};

/* Arguments are numbered from 0; -1: none. */
struct gov_syscall {
    const char *name;         /* libseccomp's */
    int nr;                   /* x86_64 */
    unsigned always;          /* 1 << GOV_*: a limit on any of them stops every call */
    unsigned when;            /* ... stops the calls that match one of cond[] */
    int ncond;
    struct gov_syscall_cond cond[2];
    int fd;                   /* the fd it reads, writes or resizes */
    int fd_in;                /* a transfer (sendfile, splice...): the fd it reads */
    int dirfd;                /* a name it adds: its directory fd, -1: the cwd */
    int path;                 /* ... and its path */
    int open_flags;           /* an open's flags, -1: O_CREAT (creat) */
    unsigned flags;           /* GOV_SYS_* */
};

/* The governed call of x86_64 number nr, or NULL. */
const struct gov_syscall *gov_syscall_of(int nr);

/* Its GOV_SYS_* flags, 0 for a call the table does not have. */
unsigned gov_syscall_flags(int nr);

/* The number of a call's name as libseccomp knows it: in the x86_64
 * table, or the i386 one with `compat`; -ENOENT. */
int gov_syscall_number(const char *name, int compat);

/* The name of call nr into buf, as the logs show it: from the x86_64 table,
 * from the i386 one with `compat` (a call through int $0x80), "x32 NAME"
 * for a number with GOV_X32_BIT; a number libseccomp does not know as that
 * number. Its length, or -ENOSPC. */
int gov_syscall_name(int nr, int compat, char *buf, size_t size);

#endif
