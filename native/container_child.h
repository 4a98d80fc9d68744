/* Internal to native/: container set-up steps that run between fork and
 * exec (never from Python: they mount and pivot the calling process). */
#ifndef GOV_CONTAINER_CHILD_H
#define GOV_CONTAINER_CHILD_H

#include "container.h"

struct gov_process;

/* In the init shim, after its namespaces were made: joins the namespaces
 * ns_fd[GOV_NS_*] holds open (but pid, joined before the clone, and user,
 * the command's; -1: none), sets the hostname, makes the mounts, devices, sysctls,
 * read-only and masked paths, pivot_root, loopback up in a new network
 * namespace. 0, or -errno with *step (and *index: which mount, device,
 * sysctl or path) set. */
int container_enter(const struct gov_container *c, const int *ns_fd, int *step, int *index);

/* In the init shim: writes the command's uid_map and gid_map (pid as the
 * init sees it). */
int container_map_ids(int pid, const struct gov_container *c);

/* In the command, as root of its user namespace or of the host: the
 * process's ids, capabilities, rlimits and oom_score_adj (p may be NULL:
 * become root). 0 or -errno with *step set. */
int container_become(const struct gov_process *p, int in_user_ns, int *step);

/* In the command: drops the bounding set, sets ids and capabilities (after
 * the seccomp filter is in, so that it could be installed with privilege). */
int container_drop_privileges(const struct gov_process *p, int *step);

/* Names the calling process governor-init (comm and /proc/PID/cmdline). */
void container_name_init(void);

#endif
