# tlstap — two commands do everything on a fresh Debian bookworm machine:
#   sudo make run    build, then run the service in the foreground on built-in defaults
#   sudo make test   build, then run every test (unit + end-to-end on the real kernel)

SWIFT ?= swift
RELEASE_FLAGS = -c release --static-swift-stdlib
BIN = .build/release/tlstap
VERSION ?= $(shell sed -n 's/^let tlstapVersion = "\(.*\)"/\1/p' Sources/TapCore/Version.swift)
ARCH ?= $(shell dpkg --print-architecture)

# Debian packages the build, the service and the tests need.
DEB_BUILD = libbpf-dev libelf-dev zlib1g-dev libsystemd-dev libzstd-dev clang llvm bpftool pkg-config
DEB_TEST  = tshark zstd tcpdump iproute2 iputils-ping curl nginx-light openssl python3 python3-pytest python3-pip \
            procps psmisc util-linux postgresql mariadb-server mariadb-client nodejs \
            systemd-container debootstrap dpkg-dev fakeroot
DEB_BENCH = wrk iperf3 hyperfine
# What packaging/build-deb.sh runs: dpkg-deb and dpkg-shlibdeps, strip, python3 for the man page.
DEB_PACKAGE = dpkg-dev binutils python3

.PHONY: all build run test unit e2e deps deps-test deb bench clean

# Installs those of the given Debian packages that are not installed yet (apt-get update first).
define install_missing
missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
if [ -n "$$missing" ]; then \
	echo "installing:" $$missing; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
fi
endef

all: build

deps:
	@$(call install_missing,$(DEB_BUILD))

deps-test: deps
	@$(call install_missing,$(DEB_TEST) $(DEB_PACKAGE))

build: deps
	$(SWIFT) build $(RELEASE_FLAGS) --product tlstap

run: build
	$(BIN) run

unit: deps-test
	$(SWIFT) test --no-parallel

# End-to-end tests run the release binary (what the .deb ships) and a test-only segment writer driver.
e2e: deps-test build
	$(SWIFT) build $(RELEASE_FLAGS) --product segment-replay
	TLSTAP_BIN=$(abspath $(BIN)) python3 -m pytest -v --durations=15 Tests/e2e

test: unit e2e

deb: build
	@$(call install_missing,$(DEB_PACKAGE))
	packaging/build-deb.sh $(BIN) $(VERSION) $(ARCH)

bench: deps-test build
	@$(call install_missing,$(DEB_BENCH))
	bench/run-all.sh $(abspath $(BIN))

clean:
	rm -rf .build
