"""governor-oci: the OCI runtime (runc's command line) whose containers run
under the governor. Modules by concern: config (config.json, read and
checked), limits (linux.resources and annotations -> Limits), build (a spec
as native/container.c's data), state (ROOT/ID on disk), supervisor (the
per-container process that holds the engine), hooks, spec (defaults,
features), runtime (what each command does), cli (runc's command line)."""
