# Two commands on a fresh machine: `make run` serves, `make test` tests.
# Everything installs into .venv; caches stay inside the project.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PIP_CACHE_DIR  ?= $(CURDIR)/.cache/pip
export XDG_CACHE_HOME ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK = 1
export npm_config_cache ?= $(CURDIR)/.cache/npm
NODE_AGENT := tests/agents/node
NODE_STAMP := $(NODE_AGENT)/node_modules/.installed
TS_CLIENT  := generated/ts
TS_STAMP   := $(TS_CLIENT)/node_modules/.installed
WEB_CHECK  := tests/agents/web
WEB_STAMP  := $(WEB_CHECK)/node_modules/.installed

SEED ?= 1
# SCORER=0: no reference scorer beside the demo server (it runs as the demo service
# account, so only with the demo accounts: SEED=1).
SCORER ?= 1
PROTO_FILES := $(wildcard protos/veritas/v1/*.proto)
BASELINE    := protos/v1-baseline.binpb

.PHONY: help install run web test test-unit test-integration test-e2e test-ops-metrics prometheus-tools fuzz lint lint-proto lint-python proto baseline bench bench-oversight clean

help:
	@echo "make run    - install, migrate, seed the demo data (SEED=0 skips) and serve on 127.0.0.1:50051,"
	@echo "              with the reference scorer beside it (SCORER=0 leaves it out)"
	@echo "make test   - install and run lint, proto checks and the whole test suite"
	@echo "make fuzz   - the fuzz test of every RPC with the long budget (~12 min; make test runs ~1 min of it)"
	@echo "make drills - the long drills make test skips (tests marked drill: PITR, a failover of"
	@echo "              the primary to its synchronous standby, 300 agents over three servers behind"
	@echo "              Envoy, a 500-job scorer fleet, certificate rotation, ...; ~5 min)"
	@echo "make drill-pitr - the point-in-time recovery drill alone (~25 s)"
	@echo "make patroni-tools - etcd (apt-get) and Patroni for the automatic failover drill (make drills needs them)"
	@echo "make web    - Envoy on 127.0.0.1:8080: grpc-web for browser frontends (next to make run)"
	@echo "make web-tls - the same over https on 127.0.0.1:8443, TLS to a TLS server (README, Transport security)"
	@echo "make web-lb - Envoy on 127.0.0.1:8080 balancing gRPC and grpc-web over servers on 50051-50053"
	@echo "make proto  - regenerate generated/, docs/API.md and the README's API table from protos/"
	@echo "make baseline - record protos/ as the v1 baseline that buf breaking compares against"
	@echo "make bench  - run the benchmarks in scripts/ (figures go to docs/PERFORMANCE.md)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The example agent in another language, used by the e2e tests (Node.js 20+ and npm).
$(NODE_STAMP): $(NODE_AGENT)/package-lock.json
	cd $(NODE_AGENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The TypeScript client's runtime and generator (protoc-gen-es), used by `make proto`.
$(TS_STAMP): $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A frontend's calls with that client (Connect-ES, tsc), used by the e2e tests.
$(WEB_STAMP): $(WEB_CHECK)/package-lock.json $(TS_STAMP)
	cd $(WEB_CHECK) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP) $(TS_STAMP) $(WEB_STAMP)

# Envoy from `make web` is the local proxy: trusted for the browser's address, so that
# sign-in throttles count browsers, not Envoy (README, Security model).
run: $(STAMP)
	VERITAS_ENV=$${VERITAS_ENV:-demo} VERITAS_TRUSTED_PROXIES=$${VERITAS_TRUSTED_PROXIES-127.0.0.1} \
		$(BIN)/veritas serve --migrate $(if $(filter 1,$(SEED)),--seed-demo,) \
		$(if $(and $(filter 1,$(SEED)),$(filter 1,$(SCORER))),--demo-scorer,)

# --base-id: its own, so that it never shares one with the Envoys the e2e tests start
# (they use their listening port, an ephemeral one; this is 8080, which is not).
web: $(STAMP)
	$(BIN)/envoy -c deploy/envoy.yaml --disable-hot-restart --base-id 8080 --concurrency 2 -l warning

# deploy/envoy-tls.yaml, with the certificates of `veritas dev-cert .veritas-data/tls`.
.PHONY: web-tls
web-tls: $(STAMP)
	$(BIN)/envoy -c deploy/envoy-tls.yaml --disable-hot-restart --base-id 8443 --concurrency 2 -l warning

# deploy/envoy-lb.yaml: gRPC and grpc-web on 127.0.0.1:8080 balanced over three servers
# on 127.0.0.1:50051-50053 (start them with VERITAS_LISTEN=127.0.0.1:5005N).
.PHONY: web-lb
web-lb: $(STAMP)
	$(BIN)/envoy -c deploy/envoy-lb.yaml --disable-hot-restart --base-id 8081 --concurrency 2 -l warning

proto: $(STAMP) $(TS_STAMP)
	$(BIN)/python scripts/gen_protos.py
	$(BIN)/python scripts/gen_api_docs.py
	$(BIN)/python scripts/gen_ts.py

lint-proto: $(STAMP)
	cd protos && ../$(BIN)/buf lint && ../$(BIN)/buf format --exit-code > /dev/null
	@test -f $(BASELINE) || { echo "$(BASELINE) is missing: run make baseline"; exit 1; }
	cd protos && ../$(BIN)/buf breaking --against $(notdir $(BASELINE))

# The committed image of v1 that buf breaking compares the protos against. Rewrite it
# only in the commit that breaks v1 on purpose, and say why there (README, API).
baseline: $(STAMP)
	cd protos && ../$(BIN)/buf build --exclude-source-info -o $(notdir $(BASELINE))

lint-python: $(STAMP)
	$(BIN)/ruff check veritas_grpc tests scripts migrations
	$(BIN)/ruff format --check veritas_grpc tests scripts migrations
	$(BIN)/lint-imports

lint: lint-proto lint-python lint-deploy

# The deployment files, by the tools that run without a container engine (README,
# "Containers and Kubernetes"); tests/unit/test_deploy_files.py checks what they say.
lint-deploy: $(STAMP)
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml

.PHONY: dist test-dist lint-deploy
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL      := dist/veritas_grpc-$(VERSION)-py3-none-any.whl
WHEELHOUSE := .cache/wheelhouse

# The wheel and the sdist, from a clean build/ (setuptools would keep deleted files).
dist: $(STAMP)
	rm -rf build dist
	$(BIN)/python -m build --no-isolation --outdir dist . > /dev/null

# The wheel's dependencies as wheels, read from its own metadata, for installs with
# --no-index; downloaded again only when pyproject.toml changes.
$(WHEELHOUSE)/.complete: pyproject.toml
	rm -rf $(WHEELHOUSE)
	$(BIN)/pip download --quiet --dest $(WHEELHOUSE) $(WHEEL)
	rm -f $(WHEELHOUSE)/veritas_grpc-*
	touch $@

# The wheel installed into a fresh venv outside the checkout: migrate, serve, healthcheck.
test-dist: dist
	$(MAKE) --no-print-directory $(WHEELHOUSE)/.complete
	VERITAS_DIST_WHEEL=$(CURDIR)/$(WHEEL) VERITAS_WHEELHOUSE=$(CURDIR)/$(WHEELHOUSE) \
		$(BIN)/pytest tests/e2e/test_installed_wheel.py

test: lint $(NODE_STAMP) $(TS_STAMP) $(WEB_STAMP)
	$(BIN)/pytest

test-unit: $(STAMP) $(TS_STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

test-e2e: $(STAMP) $(NODE_STAMP) $(WEB_STAMP)
	$(BIN)/pytest tests/e2e

# Debian's prometheus (promtool and the server) for the metrics checks; we run as root.
# The tests start a Prometheus of their own on loopback.
prometheus-tools:
	@command -v promtool >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

# deploy/prometheus/ checked by promtool, its alert rules unit-tested, and a real
# Prometheus scraping a test server (the tests marked `prometheus`; make test skips
# them where prometheus is not installed).
test-ops-metrics: $(STAMP) prometheus-tools
	$(BIN)/pytest -m prometheus tests/e2e/test_prometheus.py

# The fuzz test (tests/fuzz) with its long budget; `make test` runs it with a small one.
# FUZZ_EXAMPLES=n sets the examples per RPC, FUZZ_SEED=n another seed than the fixed one.
fuzz: $(STAMP)
	VERITAS_FUZZ_PROFILE=long VERITAS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) VERITAS_FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest tests/fuzz -p no:cacheprovider

# The point-in-time recovery drill (tests/drills/test_pitr.py, ~25 s; README, "Backup and restore"):
# WAL archiving, a base backup and a recovery to a restore point, with the embedded
# wheel's initdb, pg_ctl and pg_basebackup. `make test` skips it; .ci/run runs it.
.PHONY: drill-pitr drills
drill-pitr: $(STAMP)
	VERITAS_DRILLS=1 $(BIN)/pytest tests/drills/test_pitr.py -p no:cacheprovider

# The automatic failover drill's tools (tests/drills/test_patroni_failover.py): Debian's
# etcd-server (apt-get: as root, like prometheus-tools) and Patroni in a venv of the
# system Python, which the PostgreSQL user can run (the project's Python lives under
# /root). Patroni is pinned here, not in pyproject.toml: it runs beside PostgreSQL, not
# in the server.
PATRONI_VERSION := 4.1.5
PATRONI_STAMP   := .cache/patroni/.installed-$(PATRONI_VERSION)
.PHONY: patroni-tools
patroni-tools: $(PATRONI_STAMP)
$(PATRONI_STAMP):
	@command -v etcd >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server; }
	rm -rf .cache/patroni
	/usr/bin/python3 -m venv .cache/patroni
	.cache/patroni/bin/pip install -q "patroni[etcd3,psycopg2-binary]==$(PATRONI_VERSION)"
	touch $@

# Every test marked `drill` (pyproject.toml): what is too long for make test's few
# minutes but must still run on every change; .ci/run runs it.
drills: $(STAMP) $(NODE_STAMP) $(PATRONI_STAMP)
	VERITAS_DRILLS=1 $(BIN)/pytest -m drill tests -p no:cacheprovider

bench: $(STAMP)
	cd scripts && ../$(BIN)/python bench_streams.py 0 1000 2000 5000
	cd scripts && ../$(BIN)/python bench_auth.py 30 2000

# Oversight reads at scale (docs/BENCH_ADMIN.md): loads ~8 GB into an embedded server
# under /tmp/oversight-bench for ~15 minutes, and drops it afterwards.
bench-oversight: $(STAMP)
	cd scripts && ../$(BIN)/python bench_oversight.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
