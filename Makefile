# YouSaid. Two commands for a newcomer: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run sandbox test bench bench-ab profile check lint typecheck catalogs translations migrate clean example-digest soak reliability chromium

# With TELEGRAM_BOT_TOKEN set: the real bot. Without: the sandbox (a local stand-in for
# Telegram and a chat in this terminal). Each migrates its own database as it starts (no
# `migrate` step here: without a token it would migrate the real bot's database too).
run: $(INSTALLED) catalogs
	@if [ -n "$$TELEGRAM_BOT_TOKEN" ]; then $(PY) -m bot run; else $(PY) -m bot sandbox; fi

test: $(INSTALLED) catalogs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict state_machines storage bot bench
	$(VENV)/bin/hadolint Dockerfile
	$(PY) -m bot check
	@# Debian's Chromium, for the digest report's screenshot test. Under CI=true it must be
	@# there (the test may not skip); elsewhere (no apt-get, no sudo) the test skips.
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		$(MAKE) --no-print-directory chromium || [ "$$CI" != true ]
	@# One worker a core, at most 4 (tests wait on replies for up to 10 s; more workers
	@# than cores would make them wait on the CPU instead). tests/log_privacy.py gathers
	@# every worker's findings.
	$(PY) -m pytest -q -n auto --maxprocesses 4

chromium:
	@command -v apt-get >/dev/null || { \
		echo "note: no chromium and no apt-get here: the digest screenshot test will skip"; \
		exit 1; }
	@if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	{ $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium; } || { echo "note: chromium could not be installed: the screenshot test will skip"; \
	  exit 1; }

# A digest from invented data (Markdown, CSV, HTML and the chart) in example-digest/.
example-digest: $(INSTALLED) catalogs
	$(PY) -m tests.example_digest --out example-digest

# The virtualenv, created if missing and refreshed when pyproject.toml changes.
$(INSTALLED): pyproject.toml
	@# A venv left half-made (e.g. python3-venv missing, so no pip) is made again.
	$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); python3 -m venv $(VENV); }; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# Compiled catalogs (.mo) are build output, made from the committed .po files.
catalogs: $(INSTALLED)
	$(VENV)/bin/pybabel compile --domain messages --directory locales --statistics

# Extract texts from the dialogue YAML, update every catalog, compile.
translations: $(INSTALLED)
	$(VENV)/bin/pybabel extract -F babel.cfg -o locales/messages.pot --no-location \
		--project YouSaid --copyright-holder YouSaid .
	$(VENV)/bin/pybabel update -i locales/messages.pot -d locales --domain messages --ignore-obsolete
	$(MAKE) catalogs

# Benchmarks: numbers, not pass/fail (inbound burst, broadcast, start-up and memory, digest at
# scale, jobs in parts; ~10 min on 2 cores). Prints a table and writes bench/RESULTS.md.
bench: $(INSTALLED) catalogs
	$(PY) -m bench

# Before and after a change: the inbound burst at BASE (a git worktree) and at the working
# tree, in alternating pairs, CPU per update ÷ the ceiling's (~7 min; run nothing else).
BASE ?= HEAD~1
bench-ab: $(INSTALLED) catalogs
	$(PY) -m bench.ab $(BASE)

# Where the bot's CPU goes in the inbound burst: a py-spy sampling profile of
# `bench.inbound` (1,000 people; ~2 min), summarised by bench/spy.py. The raw stacks stay in
# build/profile/ (py-spy's flamegraph tools read them too).
profile: $(INSTALLED) catalogs
	$(PY) -m pip install --quiet -e '.[dev,profile]'
	mkdir -p build/profile
	$(VENV)/bin/py-spy record --rate 250 --format raw -o build/profile/inbound.txt -- \
		$(PY) -m bench.inbound --people 1000 --baseline-updates 200 --repeats 1
	$(PY) -m bench.spy build/profile/inbound.txt

# The fault suite's long run: 200 kill -9 and restart rounds (about 10 minutes).
soak: $(INSTALLED) catalogs
	RELIABILITY_RESULTS=build/reliability $(PY) -m tests.soak --rounds 200

# docs/reliability.md, rewritten from a fresh run of the fault suite, the soak and the other
# issue-7 tests (a failure is written into the report, not hidden).
RELIABILITY_TESTS = tests/test_faults.py $(wildcard tests/test_hostile_input.py \
	tests/test_access_matrix.py tests/test_staff_access.py tests/test_log_privacy.py \
	tests/test_sentry_e2e.py tests/test_backup*.py tests/test_retention*.py \
	tests/test_key_rotation*.py)
reliability: $(INSTALLED) catalogs
	rm -rf build/reliability
	-RELIABILITY_RESULTS=build/reliability $(PY) -m pytest -q \
		--junitxml=build/reliability/junit.xml $(RELIABILITY_TESTS)
	-RELIABILITY_RESULTS=build/reliability $(PY) -m tests.soak --rounds 200
	$(PY) -m tests.reliability_report build/reliability docs/reliability.md

sandbox: $(INSTALLED) catalogs migrate
	$(PY) -m bot sandbox

migrate: $(INSTALLED)
	$(PY) -m bot migrate

check: $(INSTALLED) catalogs
	$(PY) -m bot check

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(INSTALLED)
	$(PY) -m mypy --strict state_machines storage bot bench

clean:
	rm -rf $(VENV) build *.egg-info
