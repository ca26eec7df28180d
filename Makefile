# Every habit is one short command. The venv is made on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The suite runs on SQLite, then its database tests again on this PostgreSQL database (skipped
# with PG_URL=); tests that reach no database (ml, serving, storage...) run once.
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=

.PHONY: install serve test test-sqlite test-pg lint format bench clean assets browser ops-check \
	ops-tools

install: $(VENV)/.installed assets

# torch is pinned first: the CPU wheel of that exact version lies on the machine, while the
# project's range would let pip pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The dashboard's front-end libraries, from the npm registry as package-lock.json pins them,
# copied with their licences into the package's static folder (served by the gateway: no page
# loads anything from another host).
VENDOR := src/aiaas/web/static/vendor
assets: $(VENDOR)/.built

$(VENDOR)/.built: package.json package-lock.json
	@command -v npm >/dev/null || { apt-get update && apt-get install -y npm; }
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/chart.js
	cp node_modules/chart.js/dist/chart.umd.min.js node_modules/chart.js/LICENSE.md $(VENDOR)/chart.js/
	touch $@

# Debian's chromium, for the dashboard's browser tests (tests/web); Playwright drives it.
browser:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

# The operations checks (docs/operations.md, "Checking the deploy files"): Prometheus's config,
# rules and rule unit tests (promtool), Alertmanager's config (amtool), the compose file against
# the Compose Specification, the Kubernetes manifests and the rendered Helm chart against their
# schemas and the restricted Pod Security Standard, and tests/deploy. promtool and amtool come
# from Debian's prometheus and prometheus-alertmanager packages; the Python tools
# (deploy/requirements-ops.txt) get a venv of their own.
OPS_VENV := deploy/.venv
OPS_PY := $(OPS_VENV)/bin/python
OPS_OUT := build/ops

ops-tools: $(OPS_VENV)/.installed
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { apt-get update \
		&& apt-get install -y --no-install-recommends prometheus prometheus-alertmanager; }

$(OPS_VENV)/.installed: deploy/requirements-ops.txt
	rm -rf $(OPS_VENV) && $(PYTHON) -m venv $(OPS_VENV)
	$(OPS_PY) -m pip install --quiet -r deploy/requirements-ops.txt
	touch $@

ops-check: ops-tools
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/alerts.yml deploy/prometheus/slo.yml
	promtool test rules deploy/prometheus/tests/*.yml
	amtool check-config deploy/alertmanager/alertmanager.yml
	$(OPS_PY) deploy/tools/sync_monitoring.py --check
	$(OPS_PY) deploy/tools/validate_compose.py docker-compose.yml
	rm -rf $(OPS_OUT) && mkdir -p $(OPS_OUT)
	$(OPS_PY) deploy/tools/render_helm.py --out $(OPS_OUT)/helm
	promtool check rules $(OPS_OUT)/helm/*.rules.yml
	$(OPS_PY) deploy/tools/validate_k8s.py deploy/k8s $(OPS_OUT)/helm/*.yaml

serve: install
	$(VENV)/bin/aiaas serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)
	@if [ -n "$(PG_URL)" ]; then \
		echo "== the database tests again on PostgreSQL ($(PG_URL))"; \
		AIAAS_TEST_DATABASE_URL=$(PG_URL) $(PY) -m pytest -m database $(PYTEST_ARGS); \
	fi

test-sqlite: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-pg: install
	AIAAS_TEST_DATABASE_URL=$(PG_URL) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict src

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The prediction benchmark (bench/README.md): BENCH_ARGS=--quick for 3 s runs, --only NAME.
# LitServe gets a venv of its own; if it cannot be installed the bench reports it unavailable.
LITSERVE_VENV := bench/.venv-litserve
BENCH_ARGS ?=
bench: install
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	@test -f $(LITSERVE_VENV)/.installed || { \
		rm -rf $(LITSERVE_VENV) && $(PYTHON) -m venv $(LITSERVE_VENV) \
		&& $(LITSERVE_VENV)/bin/pip install --quiet torch==2.13.0 \
		&& $(LITSERVE_VENV)/bin/pip install --quiet litserve numpy safetensors \
		&& touch $(LITSERVE_VENV)/.installed; \
	} || { echo "LitServe could not be installed: reported as unavailable"; rm -rf $(LITSERVE_VENV); }
	$(PY) bench/predict.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(OPS_VENV) $(OPS_OUT) .mypy_cache .ruff_cache .pytest_cache
