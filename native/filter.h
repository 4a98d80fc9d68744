/* The seccomp filter of a group, built with libseccomp (which handles the
 * i386 and x32 entries of a 64-bit process and builds a binary search tree
 * over syscall numbers). Only the calls that a set limit needs are sent to
 * the supervisor; everything else is allowed by the filter itself. */
#ifndef GOV_FILTER_H
#define GOV_FILTER_H

#include <stddef.h>
#include "gov.h"

/* Writes the BPF program (struct sock_filter[]) into buf.
 * Returns its length in bytes, or -errno (-ENOSPC if buf is too small). */
int gov_filter_build(const struct gov_limits *lim, void *buf, size_t size);

#endif
