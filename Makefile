# sluice: every build, test, demo and benchmark entry point is here.
#   make deps    apt-install build and test dependencies (Debian 12)
#   make         build build/sluice, build/sluiced, BPF objects and test tools
#   make test    deps, build, then every test suite
BUILD   ?= build
CC      ?= gcc
CLANG   ?= clang
BPFTOOL ?= bpftool
ARCH    := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Iinclude -Iloader
SLUICE_CFLAGS := -D_GNU_SOURCE
# The compiler, the plan and the CLI need libyaml only; what loads BPF needs the rest.
LDLIBS_COMPILER := -lyaml -lm -lpthread
LDLIBS_KUBE := -lcurl -lpthread
LDLIBS  := -lbpf -lelf -lz -lcap $(LDLIBS_KUBE) $(LDLIBS_COMPILER)

# python3, openssl, curl: the Kubernetes API double (tests/apiserver); libcurl: sluiced's API client.
# Its tests need a kubectl too: Debian's kubernetes-client where none is installed (deps below), not
# listed, because it conflicts with the kubectl package that owns /usr/bin/kubectl on these machines.
DEB_PACKAGES := build-essential clang llvm libbpf-dev bpftool libyaml-dev libcap-dev libcurl4-openssl-dev \
	libelf-dev zlib1g-dev libclang-rt-14-dev iproute2 pkg-config jq \
	iptables nftables conntrack haproxy socat gnuplot-nox python3 python3-yaml openssl curl prometheus podman runc

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SRCS))
BPF_SKELS := $(patsubst bpf/%.bpf.c,$(BUILD)/%.skel.h,$(BPF_SRCS))
# loader/: one folder per stage (README, Layout). The compiler library (common, compile, plan) is
# everything `sluice plan` and the unit tests need; the data plane's objects alone read skeletons.
COMPILER_SRCS  := $(wildcard loader/common/*.c loader/compile/*.c loader/plan/*.c)
DATAPLANE_SRCS := $(wildcard loader/dataplane/*.c)
KUBE_SRCS      := $(wildcard loader/kube/*.c)
DAEMON_SRCS    := $(wildcard loader/daemon/*.c)
lib_objs = $(patsubst loader/%.c,$(BUILD)/lib/%.o,$(1))
CLI_OBJS  := $(patsubst cli/%.c,$(BUILD)/cli/%.o,$(wildcard cli/*.c))
TOOLS     := $(patsubst tests/tools/%.c,$(BUILD)/%,$(wildcard tests/tools/*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*.c))
HEADERS   := $(wildcard include/*.h loader/*/*.h cli/*.h)

.PHONY: all deps test unit fuzz bench clean demo
all: $(BUILD)/sluice $(BUILD)/sluiced $(BUILD)/tests/dp_driver $(BUILD)/tests/tc_fixtures $(TOOLS)

# Installs only what is missing, so a warm machine pays one dpkg query.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# the Kubernetes object models deploy/ is checked against (tests/deploy), pinned by the lock file
	@[ -d tests/deploy/node_modules ] || (cd tests/deploy && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

$(BUILD) $(BUILD)/cli $(BUILD)/tests:
	mkdir -p $@

$(BUILD)/vmlinux.h: | $(BUILD)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

# Static pattern rules: the skeletons are explicit targets, so the data plane's rule below is
# chosen for its objects even before they exist.
$(BPF_OBJS): $(BUILD)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.bpf.h) include/sluice_abi.h $(BUILD)/vmlinux.h
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Iinclude -I$(BUILD) -c $< -o $@.tmp.o
	$(BPFTOOL) gen object $@ $@.tmp.o && rm -f $@.tmp.o

$(BPF_SKELS): $(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	$(BPFTOOL) gen skeleton $< > $@.tmp && mv $@.tmp $@

# Of the data plane's objects only those whose source includes a skeleton (*.skel.h: never from
# a header) wait for clang and bpftool; the round-robin arithmetic (rr.c) and its unit test do not.
DATAPLANE_SKEL_OBJS := $(call lib_objs,$(shell grep -l '^\#include "[a-z_]*\.skel\.h"' $(DATAPLANE_SRCS)))
$(DATAPLANE_SKEL_OBJS): $(BPF_SKELS)
$(BUILD)/lib/dataplane/%.o: loader/dataplane/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) -I$(BUILD) -c $< -o $@

$(BUILD)/lib/%.o: loader/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) -c $< -o $@

$(BUILD)/libsluice.a: $(call lib_objs,$(COMPILER_SRCS))
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libsluice-dataplane.a: $(call lib_objs,$(DATAPLANE_SRCS))
	rm -f $@ && ar rcs $@ $^

# The Kubernetes API client (libcurl): sluiced's follower and sluice weight against a cluster.
$(BUILD)/libsluice-kube.a: $(call lib_objs,$(KUBE_SRCS))
	rm -f $@ && ar rcs $@ $^

$(BUILD)/cli/%.o: cli/%.c $(HEADERS) | $(BUILD)/cli
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) -Icli -c $< -o $@

$(BUILD)/sluice: $(CLI_OBJS) $(BUILD)/libsluice-kube.a $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS_KUBE) $(LDLIBS_COMPILER)

$(BUILD)/sluiced: $(call lib_objs,$(DAEMON_SRCS)) $(BUILD)/libsluice-dataplane.a $(BUILD)/libsluice-kube.a $(BUILD)/libsluice.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# Test tools (backend server, load generator) are standalone programs.
$(BUILD)/%: tests/tools/%.c | $(BUILD)
	$(CC) $(CFLAGS) $< -o $@ -lpthread -lm

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libsluice.a | $(BUILD)/tests
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) $< $(BUILD)/libsluice.a -o $@ $(LDLIBS_COMPILER)
# The round-robin arithmetic's test links rr.o alone: no skeleton, no libbpf, no root.
$(BUILD)/tests/rr_test: tests/unit/rr_test.c $(BUILD)/lib/dataplane/rr.o | $(BUILD)/tests
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) $^ -o $@

# Drivers of the root suites: the data plane's map writer (tests/e2e/dataplane.sh) and TC's
# packet fixtures (tests/prog/run).
$(BUILD)/tests/dp_driver: tests/prog/dp_driver.c $(BUILD)/libsluice-dataplane.a $(BUILD)/libsluice.a | $(BUILD)/tests
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/tests/tc_fixtures: tests/prog/tc_fixtures.c $(BUILD)/libsluice-dataplane.a $(BUILD)/libsluice.a | $(BUILD)/tests
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) -Wno-missing-field-initializers $^ -o $@ $(LDLIBS)

# Unit tests need no root: C test programs, then the CLI fixture tables (tests/run-unit says how
# to add a case).
unit: $(BUILD)/sluice $(UNIT_BINS)
	@SLUICE=$(BUILD)/sluice bash tests/run-unit $(UNIT_BINS)

# The YAML front end under libFuzzer, bounded; any crash, leak or sanitizer report fails, and
# leaves the input that caused it as $(BUILD)/fuzz-crash-* (replay: $(BUILD)/fuzz_yaml FILE).
FUZZ_SECONDS ?= 60
# The saved plan's reader too: every plan the compiler makes must load back.
$(BUILD)/fuzz_yaml: tests/fuzz/fuzz_yaml.c $(COMPILER_SRCS) $(HEADERS) | $(BUILD)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-std=gnu11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -Iinclude -Iloader \
		tests/fuzz/fuzz_yaml.c $(COMPILER_SRCS) -o $@ -lyaml -lm -lpthread
fuzz: $(BUILD)/fuzz_yaml
	@mkdir -p $(BUILD)/fuzz-corpus
	@echo "fuzz: $(BUILD)/fuzz_yaml for $(FUZZ_SECONDS) s, log in $(BUILD)/fuzz.log"
	@if $(BUILD)/fuzz_yaml -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz- $(BUILD)/fuzz-corpus tests/fuzz/seeds \
		> $(BUILD)/fuzz.log 2>&1; then \
		grep -E '^stat::(number_of_executed_units|peak_rss_mb)' $(BUILD)/fuzz.log; echo "fuzz: no crash, leak or sanitizer report"; \
	else tail -60 $(BUILD)/fuzz.log; echo "fuzz: FAILED, the input is in $(BUILD)/fuzz-*"; exit 1; fi

# The Istio lab's rollout on the mini-cluster, in under a minute (root).
demo: deps
	@$(MAKE) --no-print-directory all
	@bash tests/cluster/demo.sh

# Every suite: unit (no root), fuzz, BPF data plane, end-to-end on the mini-cluster.
test: deps
	@$(MAKE) --no-print-directory all
	@bash tests/run-all

# Benchmarks print figures; none fails for being slow.
.PHONY: bench-plan
$(BUILD)/plan-time: bench/plan-time.c | $(BUILD)
	$(CC) $(CFLAGS) $< -o $@
$(BUILD)/update-time: bench/update-time.c $(BUILD)/libsluice.a | $(BUILD)
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) $< $(BUILD)/libsluice.a -o $@ $(LDLIBS_COMPILER)
# sluice's image (podman, no base image) and its archive for kind load: deploy/image/build
.PHONY: image
image: all
	@BUILD=$(BUILD) bash deploy/image/build

bench-plan: $(BUILD)/sluice $(BUILD)/plan-time $(BUILD)/update-time
	@BUILD=$(BUILD) bash bench/plan-bench

# What a node pays as the plan grows from 1 service to 10,000 and to the envelope (160,000 Pods),
# under a client connecting without pause: maps, RSS, growths. Root; about 30 s;
# bench/results/footprint.txt.
.PHONY: bench-footprint
bench-footprint: all
	@BUILD=$(BUILD) bash bench/footprint

# sluiced --kubernetes following the API server double on 3 and 20 nodes: switch latency of weight
# changes and pod deletions, API load at rest, RSS at 10,000 Services and 80,000 Pods. Root; under
# 3 minutes on 2 cores; bench/results/kube-follow.txt.
.PHONY: bench-kube
bench-kube: all
	@BUILD=$(BUILD) bash bench/kube-follow

# Kubernetes' scalability envelope, 10,000 Services and 150,000 Pods: the compiler on compact and
# kubectl-shaped YAML, one sluiced --kubernetes following them through the API double (first plan,
# RSS) and the CPU of a single pod event. Root; about 4 minutes; bench/results/envelope.txt.
.PHONY: bench-envelope
bench-envelope: all $(BUILD)/plan-time $(BUILD)/update-time
	@BUILD=$(BUILD) bash bench/envelope

# Side by side with kube-proxy's iptables and nftables layouts and an HAProxy sidecar:
# bench/results/RESULTS.md, results.json, chart.png (about 10 minutes; BENCH_QUICK=1 for less).
$(BUILD)/dp_switch: bench/dp_switch.c $(BUILD)/libsluice-dataplane.a $(BUILD)/libsluice.a | $(BUILD)
	$(CC) $(CFLAGS) $(SLUICE_CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/tc-flood: bench/tc-flood.c | $(BUILD)
	$(CC) $(CFLAGS) $< -o $@
# against vmlinux.h like the data plane's objects: <linux/bpf.h> wants asm/ headers clang -target bpf lacks
$(BUILD)/tc-xdp-pass.bpf.o: bench/tc-xdp-pass.bpf.c $(BUILD)/vmlinux.h
	$(CLANG) -g -O2 -target bpf -I$(BUILD) -c $< -o $@
$(BUILD)/bench-probe: bench/probe.c | $(BUILD)
	$(CC) $(CFLAGS) $< -o $@
bench: deps
	@$(MAKE) --no-print-directory all bench-plan $(BUILD)/bench-probe
	@bash bench/run

clean:
	rm -rf $(BUILD)
