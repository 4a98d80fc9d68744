/* The seccomp filter of a group, built with libseccomp (which handles the
 * i386 and x32 entries of a 64-bit process and builds a binary search tree
 * over syscall numbers). Only the calls that a set limit needs are sent to
 * the supervisor; everything else is allowed by the filter itself. */
#ifndef GOV_FILTER_H
#define GOV_FILTER_H

#include <stddef.h>
#include "gov.h"

/* Writes the BPF program (struct sock_filter[]) for a group of `backend`
 * (GOV_BACKEND_*) into buf: the governed calls return USER_NOTIF (seccomp),
 * TRACE (ptrace) or are left to PTRACE_SYSCALL (ptrace-syscall). Under both
 * ptrace backends a tenant may not trace (ptrace: EPERM), nor create an
 * untraced task (clone with CLONE_UNTRACED: EPERM; clone3, whose flags live
 * in memory another thread may change: ENOSYS, and glibc falls back to clone).
 * Returns its length in bytes, or -errno (-ENOSPC if buf is too small). */
int gov_filter_build(const struct gov_limits *lim, int backend, void *buf, size_t size);

/* The syscall numbers (x86_64) that the limits govern: 1 in map[nr], for
 * nr < size. The ptrace-syscall backend's filter, in the tracer. */
void gov_filter_governed(const struct gov_limits *lim, unsigned char *map, int size);

#endif
