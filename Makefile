# Operator and developer entry points. Every target bootstraps what it needs (the .venv first).
#   make demo       the whole site.yml on the embedded sandbox (moto + local hosts)
#   make test       everything CI runs (.ci/run calls it)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SANDBOX_INVENTORY := inventory/sandbox
PLAYBOOK := $(BIN)/ansible-playbook -i $(SANDBOX_INVENTORY)

.PHONY: help venv provision down test lint test-playbooks test-molecule

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

#   make venv       create .venv with the pinned tooling (requirements.txt)
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

#   make provision  start the embedded AWS and run playbooks/provision.yml against it
provision: venv
	sandbox/embedded-aws start
	$(PLAYBOOK) playbooks/provision.yml

#   make down       tear everything down (bucket included), then stop the sandbox
down: venv
	if sandbox/embedded-aws status >/dev/null; then \
	  $(PLAYBOOK) playbooks/teardown.yml -e teardown_delete_data=true; \
	fi
	sandbox/embedded-aws stop

#   make lint       yamllint, ansible-lint (production profile), ruff
lint: venv
	yamllint --strict .
	ansible-lint --nocolor
	ruff check .
	ruff format --check .

test-playbooks: venv
	pytest -q tests/playbooks

test-molecule: venv
	molecule test -s provision

test: lint test-playbooks test-molecule
