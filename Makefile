# Operator and developer entry points. Every target bootstraps what it needs (the .venv first).
#   make demo       the whole site.yml on the embedded sandbox (embedded AWS + local hosts), then a summary
#   make test       everything CI runs (.ci/run calls it)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SANDBOX_INVENTORY := inventory/sandbox
PLAYBOOK := ansible-playbook -i $(SANDBOX_INVENTORY)
# Python of the hosts a wheelhouse is built for (make wheelhouse PYTHON_VERSION=3.8).
PYTHON_VERSION ?= 3.8
# Debian releases the configure roles are tested on (molecule `default`), as sandbox/hosts suites.
TEST_SUITES ?= bookworm bullseye
# On one of them the host boots as Ubuntu does on EC2 (sandbox/machines/nspawn.py): SSH answers while
# cloud-init still runs and apt holds the dpkg lock, for this many seconds, so the roles that install
# must wait for both (package_manager_wait in group_vars/all/derived.yml).
FIRST_BOOT_BUSY_SUITE ?= bookworm
FIRST_BOOT_BUSY ?= 45

.PHONY: help venv host-deps vm-deps provision demo down deploy reprovision wheelhouse bench operator-policy \
	lint test \
	test-service test-playbooks test-sandbox test-molecule test-molecule-vm

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

#   make venv       create .venv with the pinned tooling (requirements-dev.txt, over requirements.txt)
# The controller's runtime (requirements.txt, what the execution environment holds too), the tools of
# CI's lint and tests, and the service with its tests: a change to any of the files reinstalls.
VENV_REQUIREMENTS := requirements.txt requirements-dev.txt service/requirements-test.txt service/pyproject.toml
venv: $(VENV)/.installed
$(VENV)/.installed: $(VENV_REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Debian packages of the sandbox hosts (nspawn) and of the VMs (qemu): installs only what is missing.
host-deps:
	sandbox/install-host-deps
vm-deps:
	sandbox/install-vm-deps

#   make provision  start the embedded AWS and run playbooks/provision.yml against it
provision: venv host-deps
	sandbox/embedded-aws start
	$(PLAYBOOK) playbooks/provision.yml

#   make demo       site.yml end to end on the sandbox, then a summary (again: changed=0)
demo: venv host-deps
	started=$$(date +%s)
	sandbox/embedded-aws start
	$(PLAYBOOK) site.yml
	echo "make demo: done in $$(( $$(date +%s) - started )) s. Remove everything with: make down"

#   make down       tear everything down (bucket and table included), then stop the sandbox
down: venv
	if sandbox/embedded-aws status >/dev/null; then \
	  $(PLAYBOOK) playbooks/teardown.yml -e teardown_delete_data=true; \
	fi
	if [[ -x sandbox/hosts ]]; then sandbox/hosts cleanup; fi
	sandbox/embedded-aws stop

#   make deploy     redeploy the service to the sandbox's instances, one host at a time
deploy: venv
	$(PLAYBOOK) playbooks/deploy.yml

#   make reprovision   replace every sandbox instance with a fresh one, oldest first, one at a time
reprovision: venv host-deps
	count=$$(ansible-inventory -i $(SANDBOX_INVENTORY) --list | python -c 'import json, sys; print(len(json.load(sys.stdin).get("api_servers", {}).get("hosts", [])))')
	for _ in $$(seq "$$count"); do $(PLAYBOOK) playbooks/reprovision.yml; done

#   make wheelhouse PYTHON_VERSION=3.8   the service and its dependencies as wheels for that Python
wheelhouse: venv
	service/tools/build-wheelhouse $(PYTHON_VERSION)

#   make operator-policy   the operator's IAM policies for inventory/aws's project and region, into build/iam/
# No AWS call: the dynamic inventory file is skipped (only its group_vars are read), so the one warning
# left says that inventory/aws holds no hosts, which is true for this playbook.
operator-policy: venv
	ANSIBLE_INVENTORY_IGNORE_REGEX='aws_ec2\.yml$$' ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_LOCALHOST_WARNING=false \
	  ansible-playbook -i inventory/aws playbooks/operator_policy.yml

#   make ee-context   the execution environment's build context (ansible-builder create), into build/ee
# Everything short of building the image, which needs podman or docker and the base image's registry.
# ansible-builder installs the EE's ansible-core before requirements.txt, so the two pins must agree.
EE_CONTEXT := build/ee
.PHONY: ee-context
ee-context: venv
	rm -rf $(EE_CONTEXT)
	ansible-builder create --file execution-environment.yml --context $(EE_CONTEXT) --output-filename Containerfile
	test -s $(EE_CONTEXT)/Containerfile
	test -s $(EE_CONTEXT)/_build/requirements.txt && test -s $(EE_CONTEXT)/_build/bindep.txt
	core_pin=$$(grep -m1 '^ansible-core==' requirements.txt)
	grep '^ARG ANSIBLE_INSTALL_REFS=' $(EE_CONTEXT)/Containerfile | grep -qwF "$$core_pin" || {
	  echo "execution-environment.yml's ansible_core differs from requirements.txt's $$core_pin" >&2; exit 1; }

#   make bench      benchmarks: the service on loopback, site.yml on the sandbox (prints tables)
bench: venv host-deps
	python service/bench/bench.py
	python bench/site_bench.py

#   make lint       yamllint, ansible-lint (production profile), ruff, ansible-test sanity on the collection
lint: venv ee-context
	yamllint --strict .
	ansible-lint --nocolor
	ruff check . sandbox/hosts sandbox/vms
	ruff format --check . sandbox/hosts sandbox/vms
	service/tools/check-python38
	tools/collection-sanity

test-service: venv
	pytest -q -p no:cacheprovider service/tests

# The provisioning tests meet AWS's unkindness (sandbox/aws_realism.py), with delays short enough for
# a suite of many runs; tests/playbooks/test_first_run.py and molecule `provision` use AWS's own.
UNKIND_AWS := SANDBOX_AWS_REALISM=1 SANDBOX_AWS_REALISM_IAM_DELAY=2 SANDBOX_AWS_REALISM_PITR_DELAY=2 \
	SANDBOX_AWS_REALISM_POLICY_DELAY=1 SANDBOX_AWS_REALISM_POLICY_VISIBLE_DELAY=1 SANDBOX_AWS_REALISM_SG_DELAY=2 SANDBOX_AWS_REALISM_CONSOLE_DELAY=3 \
	SANDBOX_AWS_REALISM_CDN_DEPLOY_DELAY=2

# The sandbox's load balancers health-check every second (the target groups say 5, AWS's least), so a
# rolling job through one waits seconds per host, not tens. The slowest tests are listed at the end,
# where CI's time goes.
test-playbooks: venv host-deps
	$(UNKIND_AWS) SANDBOX_LB_HEALTH_CHECK_INTERVAL=1 pytest -q -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder --durations=25 tests/playbooks tests/roles tests/unit

test-sandbox: venv host-deps
	pytest -q -p no:cacheprovider tests/sandbox/test_hosts.py tests/sandbox/test_embedded_aws_realism.py \
	  tests/sandbox/test_load_balancers.py tests/sandbox/test_console_output.py tests/sandbox/test_dynamodb_point_in_time.py \
	  tests/sandbox/test_machines_package.py tests/sandbox/test_budgets_update.py tests/sandbox/test_cloudfront.py

test-molecule: venv host-deps
	SANDBOX_AWS_REALISM=1 molecule test -s provision
	for suite in $(TEST_SUITES); do \
	  busy=$$([[ $$suite == $(FIRST_BOOT_BUSY_SUITE) ]] && echo $(FIRST_BOOT_BUSY) || echo 0); \
	  SANDBOX_SUITE=$$suite SANDBOX_HOSTS_FIRST_BOOT_BUSY=$$busy molecule test -s default; \
	done
	molecule test -s site

# The whole site on a qemu VM (molecule `vm`): minutes under TCG, so it has a target of its own. Its
# embedded AWS listens on a port of its own, so that it runs beside the other scenarios (`make test`).
VM_AWS_ENDPOINT := http://127.0.0.1:5001
test-molecule-vm: venv vm-deps
	SANDBOX_VM_TESTS=1 pytest -q -p no:cacheprovider tests/sandbox/test_vms.py
	SANDBOX_AWS_ENDPOINT=$(VM_AWS_ENDPOINT) molecule test -s vm

# Three phases. Stages that each keep about one core of two busy run side by side, their output
# printed whole as each ends: lint, the service's tests and the sandbox's; then the playbook tests,
# which use both cores alone; then the nspawn scenarios beside the VM's (a qemu process, one core).
# Everything the phases install comes first, so that no two apt runs meet.
test: venv host-deps vm-deps
	$(MAKE) --no-print-directory --output-sync=target -j3 lint test-service test-sandbox
	$(MAKE) --no-print-directory test-playbooks
	$(MAKE) --no-print-directory --output-sync=target -j2 test-molecule test-molecule-vm
