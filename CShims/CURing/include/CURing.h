#ifndef CURING_H
#define CURING_H
// PLACEHOLDER: the io_uring shim. Swift never sees liburing's structs.
int cu_probe(void);
#endif
