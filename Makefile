# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --quiet --disable-pip-version-check
PYTEST_ARGS ?=

# `make install-user`: a private venv in the user's data dir, commands linked into BINDIR
# (scripts/install-user.sh says why and how).
PREFIX    ?= $(HOME)/.local
BINDIR    ?= $(PREFIX)/bin
USER_VENV ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/credd-venv

# A .venv whose Python cannot start any more, or is another version than $(PYTHON), is
# removed before make looks at its stamps (they would claim an install that cannot run).
$(shell PYTHON='$(PYTHON)' bash scripts/check-venv.sh '$(VENV)' >&2)

# Two stamps: `make run` installs what running needs, `make test` adds the test tools, so
# `make run` then `make test` installs only the difference. After each pip install the
# `credd` launcher (python -IS, credd/launcher.py) goes over pip's console script.
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
LINT_STAMP := $(VENV)/.installed-lint

# pip install -e .$(1) (extras, or nothing), then the launcher over pip's `credd`.
define venv-install
	@echo "installing credd$(1) into $(VENV) (editable)"
	@$(PIP) install -e '.$(1)'
	@$(PY) -m credd.launcher install $(VENV)/bin
	@touch $@
endef

.PHONY: install install-user uninstall-user run test lint coverage bench clean system-deps tools

$(PY):
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml credd/launcher.py | $(PY)
	$(call venv-install)

$(TEST_STAMP): $(RUN_STAMP)
	$(call venv-install,[test])

$(LINT_STAMP): $(TEST_STAMP)
	$(call venv-install,[lint])

install: $(TEST_STAMP)

install-user uninstall-user:
	@PYTHON='$(PYTHON)' bash scripts/install-user.sh $(@:-user=) '$(USER_VENV)' '$(BINDIR)'

# Tools some tests drive for real (tmux, git, systemd's analyzers, shells).
system-deps:
	@bash scripts/system-deps.sh

# A git >= 2.41 for the git credential-helper tests (expiry, refresh token): nothing
# when the system git is new enough, else Debian stable's source (apt-get source) built
# once into .tools/git/. Under CI (CREDD_CI=1) a tool that cannot be had fails `make test`.
tools: system-deps
	@bash scripts/modern-git.sh

run: $(RUN_STAMP)
	@bash scripts/run.sh

test: $(TEST_STAMP) system-deps tools
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite under coverage.py, every Python process it starts measured ([tool.coverage]
# in pyproject.toml: the agent always runs in a subprocess); report here and in htmlcov/.
coverage: export COVERAGE_FILE := $(CURDIR)/.coverage
coverage: $(TEST_STAMP) system-deps tools
	rm -rf .coverage .coverage.* htmlcov
	$(PY) -m coverage run -m pytest $(PYTEST_ARGS); status=$$?; \
	$(PY) -m coverage combine -q && $(PY) -m coverage report && $(PY) -m coverage html -q; \
	exit $$status

# ruff (rules and why in pyproject.toml) and mypy (strict but for the modules listed there).
lint: $(LINT_STAMP)
	$(PY) -m ruff check credd credtui tests bench scripts
	$(PY) -m mypy

bench: $(TEST_STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .tools .coverage .coverage.* htmlcov
