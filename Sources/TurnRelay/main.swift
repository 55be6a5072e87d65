import RelayIO
print("turn-relay: io_uring probe =", IOUringProbe.run())
