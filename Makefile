# make setup: idempotent; Debian packages (only when missing), .venv, editable install.
VENV   := .venv
PY     := $(VENV)/bin/python
DEBS   := libseccomp-dev busybox-static gcc python3-dev python3-venv cpulimit strace proot \
          openssh-server openssh-client umoci chromium
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py native/*.c native/*.h native/build_native.py
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: setup
	$(PY) -m governor.demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) benchmarks/report.py

# The console's screenshots in README.md, taken by its browser tests.
screenshots: setup
	GOVERNOR_TEST_ARTIFACTS=docs $(PY) -m pytest -q -p no:cacheprovider tests/test_console.py \
	  -k "create_group or live_plot"

clean:
	rm -rf $(VENV) build *.egg-info governor/_native*.so governor/_native.c
