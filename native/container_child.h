/* Internal to native/: container set-up steps that run between fork and
 * exec (never from Python: they mount and pivot the calling process). */
#ifndef GOV_CONTAINER_CHILD_H
#define GOV_CONTAINER_CHILD_H

#include "container.h"

/* In the init shim, pid 1 of fresh pid, mount, uts, ipc and net namespaces:
 * hostname, mounts, pivot_root, loopback up. 0, or -errno with *step set. */
int container_enter(const struct gov_container *c, int *step);

/* In the init shim: maps the command's new user namespace onto
 * uid_base .. uid_base+65535 (pid as the init sees it). */
int container_map_ids(int pid, unsigned int uid_base);

/* In the command, once its ids are mapped: become container root. */
int container_become_root(void);

/* Names the calling process governor-init (comm and /proc/PID/cmdline). */
void container_name_init(void);

#endif
