# apd — two commands set everything up on a fresh Debian machine:
#   make run    start apd on the embedded SQLite store, 127.0.0.1:7777, in the foreground
#   make test   install what the tests need (venv; Debian packages when root), run the whole suite
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
PYTEST_ARGS ?=
# openssl: the TLS certificates of the test MariaDB and slapd; iproute2 (ss), systemd (systemd-analyze):
# tools single tests run. Under CI=true a missing one fails its test (tests/helpers/servers.py).
# libmariadb-dev pkg-config: mysqlclient (the C MySQL driver) compiles against them.
DEB_PACKAGES := mariadb-server postgresql slapd ldap-utils postfix dnsmasq-base swaks openssl iproute2 systemd \
                libldap2-dev libsasl2-dev python3-dev gcc libmariadb-dev pkg-config
ARGS ?=
# Debian's own python3 is built with PGO and LTO: apd's per-request work runs ~20% faster on it
# than on a plain source build (pyenv's). Any other python3 when it cannot make a venv.
PYTHON  ?= $(shell /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && echo /usr/bin/python3 || echo python3)

.PHONY: run test venv venv-ldap venv-mysql-c venv-dev deps debian-deps bench lint conf check-config init-db clean install uninstall \
        wblist-admin greylisting-admin throttle-admin cleanup-db spf-to-greylist-whitelists senderscore-admin \
        migrate-cluebringer-greylisting migrate-cluebringer-throttle fix-throttle-priority explain

# What `make run` needs: apd and the SQL drivers, all wheels (no compiler, no Debian package).
$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[mysql,pgsql]'
	touch $@

# backend = 'ldap': python-ldap compiles against libldap and libsasl (libldap2-dev libsasl2-dev).
$(VENV)/.installed-ldap: $(VENV)/.installed
	$(PIP) install -q -e '.[ldap]'
	touch $@

# mysqlclient, the C MySQL driver apd prefers to PyMySQL: it compiles (libmariadb-dev pkg-config).
# The tests run the MariaDB tests on both drivers.
$(VENV)/.installed-mysql-c: $(VENV)/.installed
	$(PIP) install -q -e '.[mysql-c]'
	touch $@

# The tests and the linter.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[test]' ruff
	touch $@

venv: $(VENV)/.installed
venv-ldap: $(VENV)/.installed-ldap
venv-mysql-c: $(VENV)/.installed-mysql-c
venv-dev: $(VENV)/.installed-dev

run: venv
	$(VENV)/bin/apd --log-to stderr $(if $(CONFIG),-c $(CONFIG),)

check-config: venv
	$(VENV)/bin/apd --check-config $(if $(CONFIG),-c $(CONFIG),)

init-db: venv
	$(VENV)/bin/apd --init-db $(if $(CONFIG),-c $(CONFIG),)

# Debian packages for the real servers the tests start (only when root and missing).
debian-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages ($(DEB_PACKAGES))"; fi

deps: debian-deps venv-ldap venv-mysql-c venv-dev

test: deps
	$(VENV)/bin/pytest -q $(PYTEST_ARGS) tests

bench: venv-dev
	$(PY) -m bench.run $(ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check apd admin tests bench
	$(VENV)/bin/ruff format --check apd admin tests bench

wblist-admin: venv
	$(VENV)/bin/apd-wblist-admin $(ARGS)

greylisting-admin: venv
	$(VENV)/bin/apd-greylisting-admin $(ARGS)

throttle-admin: venv
	$(VENV)/bin/apd-throttle-admin $(ARGS)

cleanup-db: venv
	$(VENV)/bin/apd-cleanup-db $(ARGS)

spf-to-greylist-whitelists: venv
	$(VENV)/bin/apd-spf-to-greylist-whitelists $(ARGS)

senderscore-admin: venv
	$(VENV)/bin/apd-senderscore-admin $(ARGS)

# Why would apd answer so? e.g. make explain ARGS="--sender a@example.net --recipient u@example.com"
explain: venv
	$(VENV)/bin/apd explain $(ARGS)

migrate-cluebringer-greylisting: venv
	$(VENV)/bin/apd-migrate-cluebringer-greylisting $(ARGS)

migrate-cluebringer-throttle: venv
	$(VENV)/bin/apd-migrate-cluebringer-throttle $(ARGS)

fix-throttle-priority: venv
	$(VENV)/bin/apd-fix-throttle-priority $(ARGS)

# Regenerate the documented sample settings file from apd/settings.py (REGISTRY).
conf: venv
	$(PY) -m apd.sample > conf/settings.py.sample

# `make install` (root): apd in its own venv, its commands linked into BINDIR, the systemd units,
# a settings file from the sample (an existing one is kept) and the account apd runs as.
# Debian's pip refuses to install into the system python (PEP 668), hence the venv.
# Backend 'ldap': EXTRAS=mysql,pgsql,ldap (needs libldap2-dev libsasl2-dev). EXTRAS naming mysql also builds
# mysqlclient, the C MySQL driver (needs libmariadb-dev pkg-config; PyMySQL is the fallback).
PREFIX   ?= /opt/apd
BINDIR   ?= /usr/local/bin
ETCDIR   ?= /etc/apd
UNITDIR  ?= /etc/systemd/system
APD_USER ?= apd
EXTRAS   ?= mysql,pgsql
comma    := ,
COMMANDS := apd apd-wblist-admin apd-greylisting-admin apd-throttle-admin apd-cleanup-db apd-spf-to-greylist-whitelists apd-senderscore-admin \
            apd-migrate-cluebringer-greylisting apd-migrate-cluebringer-throttle apd-fix-throttle-priority

# With mysql in EXTRAS it also tries the C MySQL driver (mysqlclient), which compiles: without
# libmariadb-dev and pkg-config it says so and apd runs on PyMySQL.
install:
	test -x $(PREFIX)/bin/python || $(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install -q --upgrade pip
	$(PREFIX)/bin/pip install -q '.[$(EXTRAS)]'
	$(if $(filter mysql,$(subst $(comma), ,$(EXTRAS))),$(PREFIX)/bin/pip install -q '.[mysql-c]' || \
	  echo "make install: mysqlclient (the C MySQL driver) not built; apd uses PyMySQL. For the faster driver: apt install libmariadb-dev pkg-config and run make install again" >&2,)
	install -d $(BINDIR) $(UNITDIR)
	for c in $(COMMANDS); do ln -sfn $(PREFIX)/bin/$$c $(BINDIR)/$$c; done
	if [ -n "$(APD_USER)" ] && ! id -u $(APD_USER) >/dev/null 2>&1; then \
	  useradd --system --home-dir /var/lib/apd --no-create-home --shell /usr/sbin/nologin $(APD_USER); fi
	install -d -m 0755 $(ETCDIR)
	if [ ! -e $(ETCDIR)/settings.py ]; then \
	  install -m 0640 conf/settings.py.sample $(ETCDIR)/settings.py; \
	  if [ -n "$(APD_USER)" ]; then chgrp $(APD_USER) $(ETCDIR)/settings.py; fi; fi
	for u in systemd/*.service systemd/*.timer; do \
	  sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/apd/|$(ETCDIR)/|g' $$u > $(UNITDIR)/$$(basename $$u); done
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: $(BINDIR)/apd -> $(PREFIX); settings $(ETCDIR)/settings.py; start with: systemctl enable --now apd"

# Removes what `make install` put in place but the settings, the account and the data (/var/lib/apd).
# PREFIX is removed whole, so first make sure it is an apd venv: never empty, /, or a system tree.
uninstall:
	@prefix='$(PREFIX)'; \
	if [ -z "$$prefix" ] || [ "$$(realpath -m -- "$$prefix")" = / ]; then \
	  echo "make uninstall: refusing PREFIX='$$prefix': it must name the venv make install made" >&2; exit 2; fi; \
	if [ ! -f "$$prefix/pyvenv.cfg" ] || [ ! -f "$$prefix/bin/apd" ]; then \
	  echo "make uninstall: refusing PREFIX='$$prefix': no apd venv there (pyvenv.cfg and bin/apd); nothing removed" >&2; \
	  exit 2; fi
	if [ -d /run/systemd/system ]; then systemctl disable --now apd apd-cleanup.timer apd-spf-whitelists.timer || true; fi
	for u in systemd/*.service systemd/*.timer; do rm -f $(UNITDIR)/$$(basename $$u); done
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	for c in $(COMMANDS); do \
	  if [ "$$(readlink $(BINDIR)/$$c)" = "$(PREFIX)/bin/$$c" ]; then rm -f $(BINDIR)/$$c; fi; done
	rm -rf -- '$(PREFIX)'
	@echo "removed apd from $(PREFIX); kept $(ETCDIR), the account $(APD_USER) and /var/lib/apd"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
