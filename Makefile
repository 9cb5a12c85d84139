# Two entry points (see README):
#   make run    set up (idempotent) and run the whole pipeline on the embedded default data
#   make test   set up (idempotent, system packages included) and run the test suite
# Everything else here is what those two are made of.

VENV    ?= .venv
PYTHON  ?= python3
CORES   ?= 2
BIN     := $(abspath $(VENV))/bin
# Stage commands say `python`: make it the project's interpreter for every tool started here.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup setup-test system-deps run test report screenshot dag clean-outputs

# The venv is updated only when the dependency declaration changes. Running the
# pipeline needs the package alone; the tests add pytest and the SLURM executor
# plugin (the `dev` and `cluster` extras), so the default install stays lean.
# pip byte-compiles the 15,000 installed modules one at a time, most of its install time
# (measured: 160 s for pip with its compile, 75 s without it + 34 s for compileall on both cores);
# compileall's exit status only says that some package ships files for other Pythons, which pip
# skips the same way.
COMPILE := $(BIN)/python -m compileall -q -j 0 $(abspath $(VENV))/lib > /dev/null 2>&1 || true

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e .
	$(COMPILE)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev,cluster]'
	$(COMPILE)
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

# Debian packages the tests drive for real: chromium (report test), slurm + munge (cluster test).
system-deps:
	bash scripts/install_system_deps.sh

run: setup
	snakemake --cores $(CORES)
	snakemake --report reports/snakemake_report.html
	@echo "done: reports/index.html, reports/summary.md, submission/submission.csv (dvc status: $$(dvc status -q && echo clean || echo changes))"

test: setup-test system-deps
	$(BIN)/python -m pytest

# Picture of the DAG for the README (drawn from dvc.yaml with matplotlib: no graphviz needed).
dag: setup
	$(BIN)/python scripts/draw_dag.py --out docs/dag.png

# Delete every output of the pipeline and the run logs: the next `make run` starts from nothing.
clean-outputs: setup
	snakemake --delete-all-output --cores 1 --quiet
	rm -rf logs checkpoints

# The run's report (the last stage; runs whatever it still needs) and Snakemake's own.
report: setup
	snakemake --cores $(CORES) reports/index.html
	snakemake --report reports/snakemake_report.html

# The browser test on the current report; keeps Chromium's screenshot for the README.
screenshot: setup-test system-deps
	ECHOCEM_REPORT=reports/index.html ECHOCEM_SCREENSHOT=reports/report_screenshot.png \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/report/test_browser.py
