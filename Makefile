# Plum: `make run` serves a demo on http://127.0.0.1:8000, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE=

.PHONY: run test lint format bench migrate venv clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py seed_demo
	@echo ""
	@echo "Plum is starting on http://127.0.0.1:8000"
	@echo "  admin:    http://127.0.0.1:8000/admin/"
	@echo "  API docs: http://127.0.0.1:8000/api/docs/"
	@echo "  health:   http://127.0.0.1:8000/healthz"
	$(PY) manage.py runserver 127.0.0.1:8000

test: venv
	$(PY) manage.py makemigrations --check --dry-run
	STATIC_MANIFEST=0 $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
