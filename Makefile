# make setup: idempotent; Debian packages (only when missing), .venv, editable install.
VENV   := .venv
PY     := $(VENV)/bin/python
DEBS   := libseccomp-dev busybox-static gcc python3-dev python3-venv cpulimit strace proot \
          openssh-server openssh-client umoci \
          libpython3.11-testsuite git libnftables1 chromium \
          podman conmon netavark iptables containerd runc golang-go
# tests/compat builds Lua 5.4 from the sources bundled in lupa's sdist (PyPI).
COMPAT_SRC := $(VENV)/compat-src/lupa-2.2.tar.gz
STAMP  := $(VENV)/.installed

.PHONY: setup demo test compat fuzz bench soak daemon-scale noisy oci-validation screenshots clean \
        sanitize sanitize-ci

setup: $(STAMP) $(COMPAT_SRC)

$(STAMP): pyproject.toml setup.py native/*.c native/*.h native/build_native.py
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

$(COMPAT_SRC): $(STAMP)
	$(PY) -m pip download -q --no-deps --no-binary :all: --no-build-isolation lupa==2.2 \
	  -d $(dir $(COMPAT_SRC))

demo: setup
	$(PY) -m governor.demo

# tests/test_stress.py runs in sanitize-ci, against the sanitized engines.
test: setup sanitize-ci
	$(PY) -m pytest -q -p no:cacheprovider -m "not compat_full" --ignore=tests/test_stress.py tests

# The engine built with sanitizers (native/build_native.py --sanitize
# address: ASan+UBSan, leaks checked; thread: TSan) into build/sanitize-*/,
# loaded by tests/conftest.py in place of the installed one. A report fails
# the run; it goes to the terminal (pytest captures only sys.stderr here:
# a report written to a captured fd 2 would be lost with the process).
SAN_PYTEST := $(PY) -m pytest -q -p no:cacheprovider --capture=sys
ASAN_RUN   := GOVERNOR_NATIVE_DIR=$(abspath build/sanitize-address) \
              LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
              ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
              LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0 \
              UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(SAN_PYTEST)
TSAN_RUN   := GOVERNOR_NATIVE_DIR=$(abspath build/sanitize-thread) \
              LD_PRELOAD=$$(gcc -print-file-name=libtsan.so) \
              TSAN_OPTIONS=halt_on_error=1:atexit_sleep_ms=0 $(SAN_PYTEST)

build/sanitize-%/.built: $(STAMP) native/*.c native/*.h native/build_native.py
	mkdir -p $(@D)
	$(PY) native/build_native.py --sanitize $* $(@D) > $(@D).log 2>&1 || { cat $(@D).log; exit 1; }
	touch $@

# make test's share (under a minute): the lifecycle and stress tests under
# ASan+UBSan.
sanitize-ci: build/sanitize-address/.built
	GOVERNOR_STRESS_SECONDS=4 $(ASAN_RUN) tests/test_lifecycle.py tests/test_stress.py

# The lifecycle, rates, processes and engine-safety tests and a minute of
# stress per backend under ASan+UBSan; a minute of stress under TSan, on
# seccomp groups without a tracer (tests/_tenants.py, under_tsan). Not the
# UDP receive rate: its flood comes from a thread of the (slowed) test
# process; nor the 620 children (13 s plain, past its 60 s under ASan here).
sanitize: build/sanitize-address/.built build/sanitize-thread/.built
	GOVERNOR_STRESS_SECONDS=60 $(ASAN_RUN) \
	  -k "not recv_charged_what_recv_returned_udp and not 620_children" \
	  tests/test_lifecycle.py tests/test_rates.py tests/test_processes.py \
	  tests/test_engine_safety.py tests/test_stress.py
	GOVERNOR_STRESS_SECONDS=60 $(TSAN_RUN) tests/test_stress.py

# Real programs compared with native at length (CPython's regression tests of
# processes, signals, sockets, threads...): the table in README.
compat: setup
	GOVERNOR_COMPAT_REPORT=compat-report.md $(PY) -m pytest -q -p no:cacheprovider tests/compat
	@cat compat-report.md

# The property tests of tests/test_fuzz.py with 3000 examples each (make test: 40).
fuzz: setup
	HYPOTHESIS_PROFILE=long GOVERNOR_FUZZ_CONTAINERS=1000 $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py

bench: setup
	$(PY) benchmarks/report.py

# 100 groups of 10 churning tasks for 10 minutes: the supervisor must not grow.
soak: setup
	$(PY) benchmarks/soak.py --groups 100 --tasks 10 --seconds 600

# 1,000 groups of 2 tasks under one governor daemon: start, RSS, fds, per-call
# cost against 1 group, governor ps, held calls (README, A thousand tenants).
daemon-scale: setup
	$(PY) -m pytest -q -s -p no:cacheprovider benchmarks/test_daemon_scale.py --benchmark-only

# A polite group's governed-write latency alone, against its floor and next to
# each hostile tenant, in one Supervisor (README, Noisy neighbours).
noisy: setup
	$(PY) -m pytest -q -s -p no:cacheprovider benchmarks/test_noisy.py --benchmark-only

# The OCI runtime-tools suite, all of it, governor-oci and runc side by side (README's table).
oci-validation: setup
	$(PY) benchmarks/oci_validation.py

# The console's screenshots in README.md, taken by its browser tests.
screenshots: setup
	GOVERNOR_TEST_ARTIFACTS=docs $(PY) -m pytest -q -p no:cacheprovider tests/test_console.py \
	  -k "create_group or live_plot"

clean:
	rm -rf $(VENV) build *.egg-info governor/_native*.so governor/_native.c
