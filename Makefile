# make run   installs what is missing, builds the release binary and starts turn-relay with its defaults.
# make test  installs what is missing for the whole suite and runs it (swift test), interop tests included.

PYTHON ?= python3
export PYTHON

.PHONY: run test deps-run deps-test

run: deps-run
	swift build -c release --product turn-relay
	swift run -c release turn-relay

# The interop tests start the turn-relay binary that sits next to the test bundle, so everything
# (executables included) is built before the tests run.
test: deps-test
	scripts/test-bpf
	swift build --build-tests
	swift test --skip-build
	# The real-client interop suite once more, with turn-relay on its second I/O backend.
	INTEROP_IO_BACKEND=batched-syscalls swift test --skip-build --filter InteropTests

deps-run:
	scripts/install-deps run

deps-test:
	scripts/install-deps test
