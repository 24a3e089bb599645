# abfluss — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXT    := $(VENV)/.dns_wire_built
# Debian packages: tcpdump and iproute2 for live capture, the lab and the namespace tests (file
# ingest needs none: NFStream ships its own libpcap and nDPI); nfdump to read nfdump files; a Java runtime for the Spark
# engine; nftables to check block lists; Pango/HarfBuzz and fonts for WeasyPrint's PDF report;
# poppler-utils to read the PDF back in tests; sqlite3 and zip write real exports for the DLP tests;
# chromium for the web console's browser tests (Playwright drives Debian's build, no download), openssl
# for their self-signed certificate; softflowd makes make eval's sampled NetFlow variants; a C compiler
# and Python's headers build the DNS message parser (src/abfluss/readers/_dns_wire.c), the inspection
# loop (src/abfluss/dlp/inspect/_loop.c) and the eve.json block reader (src/abfluss/readers/_eve_json.c)
# at install time.
BUILD_DEBS := gcc libc6-dev python3-dev
DEBS   := $(BUILD_DEBS) tcpdump iproute2 nfdump default-jre-headless nftables poppler-utils libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core sqlite3 zip chromium openssl softflowd tcpreplay

.PHONY: demo test bench bench-cluster eval fuzz sysdeps clean lab lab-scenarios lab-tunnels lab-protocols

# The compiled modules are rebuilt when a C source changes (an editable install does not notice).
C_SOURCES := src/abfluss/readers/_dns_wire.c src/abfluss/dlp/inspect/_loop.c src/abfluss/readers/_eve_json.c
$(EXT): $(STAMP) $(C_SOURCES)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(EXT)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "abfluss needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "Python's venv module is missing: sudo apt-get install python3-venv"; exit 1; fi; }
	@{ command -v cc >/dev/null && $(PYTHON) -c 'import os, sys, sysconfig; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BUILD_DEBS) >/dev/null; \
	  else echo "building abfluss needs a C compiler and Python's headers: sudo apt-get install $(BUILD_DEBS)"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(EXT)

sysdeps:
	@if command -v dpkg >/dev/null 2>&1; then \
	  missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	else missing=""; for c in cc tcpdump ip java nft pdftotext sqlite3 zip chromium openssl tcpreplay; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing — install them: sudo apt-get install $(DEBS)"; exit 1; fi; \
	fi

demo: $(EXT) sysdeps
	$(VENV)/bin/abfluss demo

# Two workers (pytest-xdist): tests/conftest.py keeps each file on one worker and every Spark test on
# one worker (one JVM), longest files first (README, "Tests").
test: $(EXT) sysdeps
	$(PY) -m pytest -q -n 2

bench: $(EXT)
	$(PY) bench/bench_pcap.py
	$(PY) bench/bench_zeek.py
	$(PY) bench/bench_ingest.py
	$(PY) bench/bench_cli.py
	$(PY) bench/bench_ledger.py
	$(PY) bench/bench_detect.py
	$(PY) bench/bench_dlp.py
	ABFLUSS_DLP_EXAMPLES=5000 $(PY) -m pytest -q tests/test_dlp_properties.py
	$(PY) bench/bench_watch.py --minutes 30
	$(PY) bench/bench_web.py
	$(PY) bench/open_data_table.py --readme

# All detections on a real Spark standalone cluster started on this machine (a master, two workers),
# 50 million flows over 80 tenants, parity with DuckDB on a sample (docs/scale.md). Long: not in `bench`.
CLUSTER_FLOWS ?= 50000000
bench-cluster: $(EXT) sysdeps
	$(PY) bench/bench_spark_cluster.py --flows $(CLUSTER_FLOWS)

# Coverage-guided fuzzing (atheris) of every reader, the DNS decoder, TCP reassembly and the payload
# decoders, FUZZ_SECONDS per target; seeds come from ../shared/data. Crash inputs go to FUZZ_CRASHES.
# The C DNS parser then meets 20,000 generated messages against the Python parser it replaced, and
# inspection's C packet loop 3,000 generated and mutated captures against the Python loop it replaced.
FUZZ_SECONDS ?= 300
FUZZ_CRASHES ?= /tmp/abfluss-fuzz-crashes
fuzz: $(EXT)
	$(PY) tests/fuzz/run.py --all --seconds $(FUZZ_SECONDS) --crashes $(FUZZ_CRASHES)
	ABFLUSS_DNS_EXAMPLES=20000 $(PY) -m pytest -q tests/test_dns_wire_c.py
	ABFLUSS_INSPECT_LOOP_EXAMPLES=3000 $(PY) -m pytest -q tests/test_inspect_loop.py

# The verdicts and their confidence over the labelled set (bench/eval.py; table in docs/report.md).
# Without root it skips, and names, the NetFlow variants (they need a network namespace).
eval: $(EXT) sysdeps
	$(PY) bench/eval.py

lab: sysdeps
	@[ "$$(id -u)" = 0 ] || { echo "the lab builds network namespaces: run it as root (sudo make lab)"; exit 1; }
	$(PYTHON) lab/make_demo.py --out examples/

lab-scenarios: sysdeps
	@[ "$$(id -u)" = 0 ] || { echo "the lab builds network namespaces: run it as root (sudo make lab-scenarios)"; exit 1; }
	$(PYTHON) lab/scenarios.py --out examples/

# real tunnel tools (iodine, dns2tcp, ptunnel-ng; Debian packages installed by the script)
lab-tunnels: sysdeps
	@[ "$$(id -u)" = 0 ] || { echo "the lab builds network namespaces: run it as root (sudo make lab-tunnels)"; exit 1; }
	$(PYTHON) lab/tunnels.py --out examples/tunnels/

# login guessing, executable downloads and SSH banners by real tools (curl, ssh, dropbear,
# aiosmtpd, pyftpdlib: the `lab` extra) in two network namespaces
lab-protocols: sysdeps
	@[ "$$(id -u)" = 0 ] || { echo "the lab builds network namespaces: run it as root (sudo make lab-protocols)"; exit 1; }
	$(PY) -m pip install --quiet -e '.[lab]'
	$(PY) lab/protocols.py --out examples/protocols/

clean:
	rm -rf $(VENV) abfluss-data .pytest_cache build src/_abfluss_dns*.so src/_abfluss_inspect*.so
