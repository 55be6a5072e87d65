# make run   installs what is missing, builds the release binary and starts turn-relay with its defaults.
# make test  installs what is missing for the whole suite and runs it (swift test), interop tests included.
# make fuzz  builds the libFuzzer targets (Fuzz/) and runs each for FUZZ_SECONDS (default 60); see RELIABILITY.md.
# make test-sanitizers  builds .build-tsan and .build-asan and runs the threaded and RFC 6062 suites under
#            ThreadSanitizer and AddressSanitizer; fails on a test failure or any report (RELIABILITY.md).

PYTHON ?= python3
export PYTHON

FUZZ_SECONDS ?= 60
export FUZZ_SECONDS

.PHONY: run test fuzz test-sanitizers deps-run deps-test

# Built once; then the binary SwiftPM just built is exec'd (`swift run` would plan and build again).
# The XDP program (scripts/build-bpf) goes beside the binary, where turn-relay looks for it first
# (it is only loaded with --xdp-interface).
run: deps-run
	swift build -c release --product turn-relay
	scripts/build-bpf >/dev/null
	cp .build-bpf/turn_router.bpf.o "$$(swift build -c release --show-bin-path)/"
	exec "$$(swift build -c release --show-bin-path)/turn-relay"

# The interop tests start the turn-relay binary that sits next to the test bundle, so everything
# (executables included) is built before the tests run.
# scripts/swift-test-counted fails a run that executes no test (a filter that matches nothing) and
# lists the skipped tests after each run.
test: deps-test
	scripts/test-bpf
	scripts/check-alert-rules
	swift build --build-tests
	cp .build-bpf/turn_router.bpf.o "$$(swift build --show-bin-path)/"
	scripts/swift-test-counted --skip-build
	# The real-client interop suite once more, with turn-relay on its second I/O backend (the
	# harness checks that turn-relay logged `io backend batched-syscalls`).
	INTEROP_IO_BACKEND=batched-syscalls scripts/swift-test-counted --skip-build --filter InteropTests
	# The end-to-end XDP scenarios and the expiry tests (run above on native XDP) once in generic (skb) mode and once
	# without XDP, where the io_uring path must carry everything (root only; skipped otherwise).
	XDP_E2E_MODE=generic scripts/swift-test-counted --skip-build --filter "XDPEndToEndTests|XDPExpiryTests"
	XDP_E2E_DATAPATH=userspace scripts/swift-test-counted --skip-build --filter "XDPEndToEndTests|XDPExpiryTests"
	# The fuzz smoke pass: every libFuzzer target for 5 s (fails on a crash; RELIABILITY.md).
	FUZZ_SECONDS=5 scripts/fuzz

# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the wire format and the server; prints
# executions, coverage and crashes per target and fails when a target crashed.
fuzz:
	scripts/fuzz

# Not part of `make test` or CI: two more full builds and slow, instrumented runs.
test-sanitizers: deps-test
	scripts/test-sanitizers

deps-run:
	scripts/install-deps run

deps-test:
	scripts/install-deps test
