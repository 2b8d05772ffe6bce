# pqbranch: firmware for a post-quantum branch-office appliance.
# Everything goes through pqbuild (firmware/cmd/pqbuild); this file names the jobs.

BOARD   ?= qemu-x86_64
PROFILE ?= dev
GO      ?= go
SHELL   := /bin/bash
export PATH := $(PATH):/usr/local/go/bin

PQBUILD := out/bin/pqbuild
IMAGE   := out/$(BOARD)/disk.img

.PHONY: all image run test powercut bench bench-update flash stick tools keygen deps-image deps-run deps-test clean FORCE

all: image

# The build tool itself; go build's cache makes this instant when unchanged.
$(PQBUILD): FORCE
	@mkdir -p out/bin
	@$(GO) build -o $@ ./firmware/cmd/pqbuild

deps-image deps-run deps-test: $(PQBUILD)
	@$(PQBUILD) deps $(@:deps-%=%)

image: deps-image
	@$(PQBUILD) image -board $(BOARD) -profile $(PROFILE)

run: deps-run image
	@$(PQBUILD) run -board $(BOARD)

# Unit, namespace and QEMU tests. The KVM probe runs once here, not per test
# binary. Packages run one at a time: the QEMU and strongSwan tests each want
# both cores.
test: deps-test image
	PQB_ACCEL=$$($(PQBUILD) accel) $(GO) test -p 1 -count=1 -timeout 80m ./...

# Pull the plug on an updating box 20 times or more (POWERCUTS=N) at random
# moments of the download, the read-back, the boot-entry switch and the
# first boot; prints each cut and the tally per phase.
POWERCUTS ?= 20
powercut: deps-test image
	@set -o pipefail; PQB_ACCEL=$$($(PQBUILD) accel) PQB_POWERCUTS=$(POWERCUTS) $(GO) test -count=1 -timeout 180m \
		-run '^TestUpdatePowerCuts$$' -v ./qemu/lab/ | grep -E '(cut [0-9]+|update [0-9]+:|TALLY|random seed|^(---|ok|FAIL|PASS)|_test.go)'

# A release signing key: make keygen KEY=release.key (the public keyring
# goes to release.pub, for `pqbuild image -trust` and `bundle verify -keys`).
keygen: $(PQBUILD)
	@test -n "$(KEY)" || { echo "usage: make keygen KEY=path/to/release.key"; exit 2; }
	@$(PQBUILD) keygen -out $(KEY) -pub $(basename $(KEY)).pub

# Build, boot and tunnel figures, then the IKE handshake's CPU cost next to
# the crypto floor and next to strongSwan's own initiator.
bench: deps-test image
	@PQB_ACCEL=$$($(PQBUILD) accel) $(PQBUILD) bench -board $(BOARD)
	@echo
	@$(GO) test -run '^$$' -bench . -benchtime 200x ./services/ike/ | grep -E '^(Benchmark|ok|FAIL)'
	@echo
	@# Fleet: check-ins decided per second on one core (1e9 / ns/op) and bytes per check-in.
	@$(GO) test -run '^$$' -bench CheckIn -cpu 1 ./update/fleet/device/ | awk '/^Benchmark/ { for (i = 2; i < NF; i++) if ($$(i+1) == "ns/op") printf "%s  %.0f check-ins/s/core\n", $$0, 1e9/$$i; next } /^(ok|FAIL)/'
	@# Fleet: 100,000 simulated devices, wall time and reports/s into SQLite and PostgreSQL.
	@$(GO) test -run '^$$' -bench Fleet100k -benchtime 1x -timeout 30m ./update/fleet/sim/ | grep -E '^(Benchmark|ok|FAIL)'

# Only the update rows of make bench: staging against a raw write, the
# agent's memory, and an update's downtime against a plain reboot.
bench-update: deps-test image
	@PQB_ACCEL=$$($(PQBUILD) accel) $(PQBUILD) bench -only update -board $(BOARD)

flash: $(PQBUILD)
	@test -n "$(DEVICE)" || { echo "usage: make flash DEVICE=/dev/sdX [BOARD=$(BOARD)] [CONFIG=site.json]"; exit 2; }
	@$(PQBUILD) flash -image $(IMAGE) -to $(DEVICE) $(if $(CONFIG),-config $(CONFIG))

# A zero-touch stick's image: the site's config, validated, on a FAT volume
# labelled PQBRANCH (dd it onto a USB stick; see the README's flashing section).
stick: $(PQBUILD)
	@test -n "$(CONFIG)" || { echo "usage: make stick CONFIG=site.json [OUT=stick.img]"; exit 2; }
	@$(PQBUILD) stick -config $(CONFIG) -out $(or $(OUT),stick.img)

# The appliance's commands built for this host, e.g. out/bin/ike.
tools:
	@mkdir -p out/bin
	CGO_ENABLED=0 $(GO) build -o out/bin/pqbranch ./services/cmd/pqbranch
	@for a in ike status config-check; do ln -sf pqbranch out/bin/$$a; done
	@echo "built out/bin/pqbranch, out/bin/ike, out/bin/status, out/bin/config-check"

clean:
	rm -rf out
