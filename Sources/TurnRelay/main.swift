import RelayIO
print("turn-relay: io_uring probe =", RelayRuntime.probe())
