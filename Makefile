# Dask-MPI-LX: `make demo` runs the whole local stack, `make test` runs every test.
# Both install what they need first (as root, on Debian 12). The venv must be readable by
# the unprivileged users whose jobs run in it, hence a system-wide default location.
SHELL := /bin/bash
PREFIX ?= /opt/dask-mpi-lx
VENV ?= $(PREFIX)/venv
MPICH_VENV ?= $(PREFIX)/venv-mpich
DOCS_VENV ?= $(PREFIX)/venv-docs
PY := $(VENV)/bin/python
APT := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q
SYSTEM_PACKAGES := openmpi-bin libopenmpi-dev slurm-wlm munge python3-venv curl procps chromium \
		   iproute2 util-linux
NODES ?= 1
BATCH ?= slurm

.PHONY: help install system-packages venv mpich-venv pbs lint test test-unit test-mpi test-e2e docs demo demo-stop bench clean

help:
	@echo "make demo    - start the local stack and print the URL (see README); NODES=3 for 3 nodes,"
	@echo "               BATCH=pbs for OpenPBS instead of Slurm"
	@echo "make test    - install everything and run lint + all tests"
	@echo "make demo-stop - stop everything the demo started"
	@echo "make bench     - run every benchmark and regenerate docs/benchmarks.md"
	@echo "make docs      - regenerate the reference pages and build the site (strict)"
	@echo "make lint | test-unit | test-mpi | test-e2e | install | clean"

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then echo ">> apt: installing $$missing"; $(APT) update -qq && $(APT) install $$missing >/dev/null; \
	else echo ">> apt: system packages present"; fi

$(PY):
	@echo ">> creating $(VENV) from Debian's python3 (readable by job users)"
	mkdir -p $(PREFIX) && chmod 755 $(PREFIX)
	/usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip

venv: system-packages $(PY)
	@echo ">> pip: stack, test tools and this project"
	$(VENV)/bin/pip install -q -r requirements/stack.txt -r requirements/test.txt
	$(VENV)/bin/pip install -q --no-deps --force-reinstall .

mpich-venv: $(PY)
	@echo ">> MPICH venv at $(MPICH_VENV) (PyPI mpich + mpi4py, its own MPI)"
	@[ -x $(MPICH_VENV)/bin/python ] || /usr/bin/python3 -m venv $(MPICH_VENV)
	$(MPICH_VENV)/bin/pip install -q -U pip
	$(MPICH_VENV)/bin/pip install -q mpich mpi4py==4.1.2 distributed==2026.8.0 dask==2026.8.0 cryptography click pyyaml
	$(MPICH_VENV)/bin/pip install -q --no-deps --force-reinstall .

pbs: venv
	@echo ">> OpenPBS in /opt/pbs (built once per machine from ../shared/vendor)"
	$(PY) etc/local/stack.py build --batch pbs

install: venv mpich-venv pbs

lint: $(PY)
	$(VENV)/bin/ruff check src tests benchmarks spawner_hooks etc

test-unit: venv
	$(PY) -m pytest tests/unit -q

test-mpi: venv mpich-venv
	MPICH_VENV=$(MPICH_VENV) $(PY) -m pytest tests/mpi -q

test-e2e: venv
	$(PY) -m pytest tests/e2e -q

docs: venv
	@[ -x $(DOCS_VENV)/bin/mkdocs ] || { /usr/bin/python3 -m venv $(DOCS_VENV) && $(DOCS_VENV)/bin/pip install -q mkdocs==1.6.1; }
	$(PY) docs/gen_reference.py
	$(DOCS_VENV)/bin/mkdocs build --strict --quiet

test: install lint docs
	MPICH_VENV=$(MPICH_VENV) $(PY) -m pytest -q -rs

demo: venv
	DASK_MPI_LX_VENV=$(VENV) $(PY) etc/local/stack.py demo --batch $(BATCH) --nodes $(NODES)

demo-stop:
	DASK_MPI_LX_VENV=$(VENV) $(PY) etc/local/stack.py down

bench: venv
	$(VENV)/bin/pip install -q -r requirements/bench.txt
	PY=$(PY) benchmarks/run_all.sh

clean:
	rm -rf build *.egg-info .pytest_cache
