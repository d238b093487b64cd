# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test bench clean system-deps tools

# The venv is made once; a changed pyproject.toml only re-runs the install into it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Tools some tests drive for real (tmux, git, systemd's analyzers, shells).
system-deps:
	@bash scripts/system-deps.sh

# A git >= 2.41 for the git credential-helper tests (expiry, refresh token):
# nothing when the system git is new enough, else built once into .tools/git/.
tools: system-deps
	@bash scripts/modern-git.sh

run: $(STAMP)
	@bash scripts/run.sh

test: $(STAMP) system-deps tools
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .tools
