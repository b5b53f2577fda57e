# Shortlist developer entry points. Everything runs inside .venv/ at the repository root.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every install takes its versions from the lock, so a fresh clone gets the tested versions.
LOCK := constraints.txt
PIP := $(BIN)/pip install --quiet --constraint $(LOCK)
ARTIFACTS ?= artifacts
DATASET ?= ml-latest-small
export OPENBLAS_NUM_THREADS ?= 1
export PYTHONDONTWRITEBYTECODE ?= 1

.PHONY: install lock protos demo serve serve-replicated servers test lint train retrain quality bench bench-scale clean

$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(PIP) pip setuptools
	$(PIP) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Refresh the lock: resolve pyproject's ranges afresh (every extra) in a scratch virtualenv and
# record the exact versions. Then run `make test` on a fresh clone before committing it.
lock:
	rm -rf .lock-venv
	$(PY) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip setuptools
	.lock-venv/bin/pip install --quiet '.[dev,report]'
	{ echo "# Exact versions every install uses (pip --constraint). Written by \`make lock\`"; \
	  echo "# from pyproject.toml's ranges on $$(date -u +%Y-%m-%d); do not edit by hand."; \
	  .lock-venv/bin/pip freeze --all | grep -v '^shortlist' | LC_ALL=C sort -f; } > $(LOCK)
	rm -rf .lock-venv

# Regenerate the committed gRPC stubs (protos/shortlist/v1/*_pb2*.py). A test fails when stale.
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos protos/shortlist/v1/*.proto

# Train on the bundled dataset unless a published artifact version already exists.
train: $(STAMP)
	@if ls $(ARTIFACTS)/*/manifest.json >/dev/null 2>&1; then \
		echo "artifacts present in $(ARTIFACTS)/ (make retrain to fit again)"; \
	else $(BIN)/shortlist-train fit --dataset $(DATASET) --out $(ARTIFACTS); fi

retrain: $(STAMP)
	$(BIN)/shortlist-train fit --dataset $(DATASET) --out $(ARTIFACTS)

# The three servers on free ports around the demo client, which only talks to the gateway.
demo: train
	$(BIN)/python -m shortlist.common.stack run --artifacts $(ARTIFACTS) -- \
		$(BIN)/python -m shortlist.clients.demo --target {gateway}

# The servers in the foreground, restarted when one dies, until Ctrl-C. SERVE_ARGS: addresses
# and metrics, e.g. SERVE_ARGS="--gateway-address 127.0.0.1:6051 --metrics" (see
# `$(BIN)/python -m shortlist.common.stack --help`). Busy ports are refused before training.
SERVE_ARGS ?=
serve: $(STAMP)
	@$(BIN)/python -m shortlist.common.stack check $(SERVE_ARGS)
	@$(MAKE) --no-print-directory train
	$(BIN)/python -m shortlist.common.stack serve --artifacts $(ARTIFACTS) $(SERVE_ARGS)

# `serve` with two retrieval and two ranking replicas on shared state in a local redis-server
# (installed by `make servers`), the gateway balancing over them (docs/scale-out.md).
serve-replicated: $(STAMP) servers
	@$(BIN)/python -m shortlist.common.stack check --replicas 2 $(SERVE_ARGS)
	@$(MAKE) --no-print-directory train
	$(BIN)/python -m shortlist.common.stack serve --replicas 2 --artifacts $(ARTIFACTS) \
		$(SERVE_ARGS)

# Servers the tests run as local processes: Debian's redis-server, and OpenJDK 17 for Spark.
# Installed when missing and running as root (CI); otherwise those tests skip, except under
# CI=1, where they fail.
servers:
	@for need in redis-server:redis-server java:openjdk-17-jre-headless; do \
	  cmd=$${need%%:*}; pkg=$${need#*:}; \
	  command -v $$cmd >/dev/null 2>&1 && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkg >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkg >/dev/null; }; \
	  else echo "$$cmd is missing (apt-get install $$pkg as root)" >&2; fi; done

test: $(STAMP) servers
	$(BIN)/python -m pytest -q

# A small-scale run of the whole benchmark harness (a few minutes), for regression checks:
# synthetic data, a quick fit, the three servers on free ports (with /metrics: stage
# histograms and each process's CPU), open-loop load, then the same load against the floor
# (three no-op servers of the same shape, --floor), bench/bench.json with Shortlist/floor
# ratios of p50, p99 and CPU per request, and the latency breakdown bench/bench.png
# (matplotlib, the report extra).
bench: $(STAMP)
	$(PIP) -e '.[dev,report]'
	$(BIN)/shortlist-train synth --users 5000 --items 1500 --interactions 100000 \
		--out bench/data --quiet
	rm -rf bench/artifacts
	$(BIN)/shortlist-train fit --dataset bench/data --out bench/artifacts --no-tune --quiet
	$(BIN)/python -m shortlist.common.stack run --artifacts bench/artifacts -- \
		$(BIN)/shortlist-bench --target {gateway} --users bench/data/users.txt \
		--rate 40 --duration 15 --warmup 40 --floor --output bench/bench.json \
		--metrics gateway={gateway_metrics} --metrics retrieval={retrieval_metrics} \
		--metrics ranking={ranking_metrics} --plot bench/bench.png

# The full-scale run behind docs/performance.md (about half an hour): 1M users x 100K items x
# 20M interactions, a fit (timed, peak memory printed), then the stack under open-loop load:
# 20 s of warm-up (page faults, lazy caches), SCALE_SECONDS at 100 req/s (the target) and at
# 50 req/s, each followed by the floor stack under the same load (--floor: the ratios), then
# rising rates to find the highest with p99 <= 50 ms. Outputs in $(SCALE)/; data and
# artifacts are reused when present (a tuned artifact there is benched as it is).
SCALE ?= scale
SCALE_USERS ?= 1000000
SCALE_ITEMS ?= 100000
SCALE_INTERACTIONS ?= 20000000
SCALE_SECONDS ?= 60
SCALE_RATES ?= 150 200 250 300
bench-scale: $(STAMP)
	$(PIP) -e '.[dev,report]'
	@mkdir -p $(SCALE)/out
	test -f $(SCALE)/data/users.txt || $(BIN)/shortlist-train synth --users $(SCALE_USERS) \
		--items $(SCALE_ITEMS) --interactions $(SCALE_INTERACTIONS) --out $(SCALE)/data
	ls $(SCALE)/artifacts/*/manifest.json >/dev/null 2>&1 || $(BIN)/shortlist-train fit \
		--dataset $(SCALE)/data --out $(SCALE)/artifacts --no-tune
	$(BIN)/python -m shortlist.common.stack run --artifacts $(SCALE)/artifacts \
		--memory-report $(SCALE)/out/memory.json -- sh -c '\
		M="--metrics gateway={gateway_metrics} --metrics retrieval={retrieval_metrics} \
		   --metrics ranking={ranking_metrics}"; \
		$(BIN)/shortlist-bench --target {gateway} --users $(SCALE)/data/users.txt \
			--rate 100 --duration 20 --output $(SCALE)/out/bench-warmup.json \
			> $(SCALE)/out/bench-warmup.txt || exit 1; \
		$(BIN)/shortlist-bench --target {gateway} --users $(SCALE)/data/users.txt $$M \
			--rate 100 --duration $(SCALE_SECONDS) --floor --output $(SCALE)/out/bench-100.json \
			--plot $(SCALE)/out/bench-100.png > $(SCALE)/out/bench-100.txt || exit 1; \
		$(BIN)/shortlist-bench --target {gateway} --users $(SCALE)/data/users.txt $$M \
			--rate 50 --duration $(SCALE_SECONDS) --floor --output $(SCALE)/out/bench-50.json \
			> $(SCALE)/out/bench-50.txt || exit 1; \
		for r in $(SCALE_RATES); do echo "== $$r req/s"; \
			$(BIN)/shortlist-bench --target {gateway} --users $(SCALE)/data/users.txt $$M \
			--rate $$r --duration 30 --output $(SCALE)/out/bench-$$r.json \
			> $(SCALE)/out/bench-$$r.txt; head -3 $(SCALE)/out/bench-$$r.txt; done'

# The leaderboards in docs/quality.md, on the dataset zoo: both MovieLens sets as published
# (timestamps: leave-last-out) and as untimed variants (timestamps removed, rows shuffled:
# random holdout), and two synthetic shapes (a small dense catalog; a long-tail sparse one
# with play counts, no timestamps and titles only), and InstEval (students rating lecturers;
# no timestamps, no titles), which Debian ships in r-cran-lme4 (GPL >= 2); and a synthetic
# social graph twice, with planted ties (friends share tastes and items) and with random ones,
# each also evaluated without the social generator (the on/off table); and synthetic typed
# events (views, purchases, dislikes, skips), also evaluated blind to the types. About 110
# minutes.
SYNTH_SOCIAL := reports/data/synth-social
SYNTH_SOCIAL_RANDOM := reports/data/synth-social-random
SYNTH_TYPED := reports/data/synth-typed
QUALITY_WITHOUT ?= $(SYNTH_SOCIAL):social $(SYNTH_SOCIAL_RANDOM):social $(SYNTH_TYPED):events
SYNTH_DENSE := reports/data/synth-dense
SYNTH_LONGTAIL := reports/data/synth-longtail
INSTEVAL := reports/data/insteval
QUALITY_DATASETS ?= ml-100k ml-latest-small ml-100k~untimed ml-latest-small~untimed \
	$(SYNTH_DENSE) $(SYNTH_LONGTAIL) $(INSTEVAL) $(SYNTH_SOCIAL) $(SYNTH_SOCIAL_RANDOM) \
	$(SYNTH_TYPED)
quality: $(STAMP)
	$(PIP) -e '.[dev,report]'
	@mkdir -p reports/data
	test -f $(SYNTH_DENSE)/interactions.csv || $(BIN)/shortlist-train synth --users 2000 \
		--items 400 --interactions 80000 --topics 10 --out $(SYNTH_DENSE) --quiet
	test -f $(SYNTH_LONGTAIL)/interactions.csv || $(BIN)/shortlist-train synth --users 8000 \
		--items 30000 --interactions 70000 --topics 60 --skew 1.2 --weights counts \
		--no-timestamps --titles-only --out $(SYNTH_LONGTAIL) --quiet
	test -f $(SYNTH_SOCIAL)/interactions.csv || $(BIN)/shortlist-train synth --users 2000 \
		--items 1500 --interactions 60000 --topics 20 --friends 10 --influence 0.3 \
		--out $(SYNTH_SOCIAL) --quiet
	test -f $(SYNTH_SOCIAL_RANDOM)/interactions.csv || $(BIN)/shortlist-train synth \
		--users 2000 --items 1500 --interactions 60000 --topics 20 --friends 10 \
		--influence 0 --out $(SYNTH_SOCIAL_RANDOM) --quiet
	test -f $(SYNTH_TYPED)/interactions.csv || $(BIN)/shortlist-train synth --users 2000 \
		--items 1500 --interactions 60000 --topics 20 --events --out $(SYNTH_TYPED) --quiet
	test -f $(INSTEVAL)/interactions.csv || { \
		(cd reports/data && { ls r-cran-lme4_*.deb >/dev/null 2>&1 \
			|| apt-get download r-cran-lme4 \
			|| { apt-get update -qq && apt-get download r-cran-lme4; }; }) && \
		$(BIN)/shortlist-train import-dataset insteval \
			--from "$$(ls reports/data/r-cran-lme4_*.deb | tail -1)" --out $(INSTEVAL); }
	for d in $(QUALITY_DATASETS); do \
		$(BIN)/shortlist-train evaluate --dataset $$d --quiet \
			--output reports/$$(basename $$d).json || exit 1; \
	done
	for w in $(QUALITY_WITHOUT); do d=$${w%%:*}; g=$${w##*:}; \
		$(BIN)/shortlist-train evaluate --dataset $$d --quiet --without $$g \
			--output reports/$$(basename $$d)--without-$$g.json || exit 1; \
	done
	$(BIN)/python -m shortlist.training.quality_doc \
		$(foreach d,$(QUALITY_DATASETS),reports/$(notdir $(d)).json) \
		$(foreach w,$(QUALITY_WITHOUT),reports/$(notdir $(firstword $(subst :, ,$(w))))--without-$(lastword $(subst :, ,$(w))).json) \
		--output docs/quality.md

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(ARTIFACTS) .pytest_cache
