# jobfleet: `make run` shows it working on this machine, `make test` runs
# every test tier. Both install what they need on first use (the SQS
# emulator with npm, the Kubernetes control plane from source) into
# ~/.cache/jobfleet, so later runs start in seconds.

GO ?= go
GOTESTFLAGS ?=

.PHONY: all run stack test vet lint unit faults e2e fuzz build image controlplane tools deps clean-cache

all: build

build:
	$(GO) build -o bin/jobfleet ./cmd/jobfleet

## image: the multi-platform OCI image (linux/amd64, linux/arm64) in
## dist/image, an OCI layout; PUSH=registry/repo:tag also pushes it
## (INSECURE=1 for a plain-HTTP registry). No Docker needed.
PUSH ?=
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
image:
	$(GO) run ./deploy/image --out dist/image --version $(VERSION) $(if $(PUSH),--push $(PUSH)) $(if $(INSECURE),--insecure)

## run: the embedded default, jobs flowing end to end on this machine
run:
	$(GO) run ./cmd/jobfleet local

## stack: the local SQS emulator and S3 server, with their endpoints
stack:
	$(GO) run ./cmd/jobfleet stack

## test: format check, vet, lint, and every test tier with the race detector
test: vet lint deps unit faults e2e

vet:
	@unformatted="$$("$$($(GO) env GOROOT)/bin/gofmt" -l .)"; if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

lint:
	$(GO) tool staticcheck ./...

## unit: unit and integration tests (real SQS, S3 and API server)
unit:
	$(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) $$($(GO) list ./... | grep -v -e '/e2e$$' -e '/faults$$')

## faults: the fault matrix: a fault injected per scenario into the real
## dispatcher and worker processes; jobs lost, run twice and stranded are 0
faults:
	$(GO) test -race -count=1 -timeout 20m $(GOTESTFLAGS) ./faults/

## e2e: the end-to-end scenarios on the full control plane (KEDA, Karpenter, KWOK)
e2e: controlplane
	$(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./e2e/

## fuzz: fuzz every parser of outside input (job messages, interruption
## events, the registry, checkpoint manifests), FUZZTIME each
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./dispatcher/interruption/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./jobtype/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeManifest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./worker/

## controlplane: build and cache etcd, kube-apiserver and the autoscalers
controlplane:
	deploy/local/controlplane/build.sh all

## tools: build and cache helm and kubeconform (the chart's tests)
tools:
	deploy/tools/build.sh

## deps: the control plane and the tools, built side by side
deps:
	deploy/local/controlplane/build.sh all & cp=$$!; deploy/tools/build.sh; tools=$$?; wait $$cp && exit $$tools
