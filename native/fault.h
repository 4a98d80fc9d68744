/* Fault injection, for tests only (tests/test_stress.py): the n-th failure
 * point passed after gov_fault_set(n) fails, once. A point stands where the
 * system can really fail (an allocation, a pipe, a clone, taking the
 * listener, PTRACE_SEIZE...), so each error path can be walked in turn.
 * Off (0) unless a test sets it. */
#ifndef GOV_FAULT_H
#define GOV_FAULT_H

void gov_fault_set(int n);
/* How many points are still to pass before the one that fails (0: none). */
int gov_fault_left(void);
/* -1 with errno = err if this point is the one that fails, else 0. */
int gov_fault(int err);

#endif
