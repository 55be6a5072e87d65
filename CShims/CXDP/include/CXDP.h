/*
 * CXDP — the relay's loader for the XDP ChannelData fast path (BPF/turn_router.bpf.c): open the
 * object, size its route maps, load it (the kernel's verifier runs), attach it to interfaces
 * through BPF links, write its configuration, install and remove routes, sum its counters.
 *
 * The only target that links libbpf. The map layouts are BPF/turn_router.h, included here so C and
 * Swift use the program's own structs. Every call that can fail returns 0 or -errno, and writes
 * which step failed (and libbpf's last message, e.g. the verifier's) into `message`.
 */
#ifndef CXDP_H
#define CXDP_H

#include <stddef.h>
#include <stdint.h>

#include "../../../BPF/turn_router.h"

/* An opened and loaded turn_router object, with its attachments (opaque). */
typedef struct cx_fast_path cx_fast_path;

/* Attach modes (cx_attach). */
enum { CX_MODE_NATIVE = 0, CX_MODE_GENERIC = 1 };

/* cx_route_add: both maps refused the route because one of them is full (E2BIG/ENOSPC); the
 * channel stays on the userspace path. Distinct from every -errno. */
#define CX_ROUTE_MAP_FULL 1

/* Reads the object file at `path` (kept in memory for cx_resize_prepare), sizes both route maps to
 * `route_entries` and tr_egress to `egress_entries` (the number of interfaces to attach; 0 keeps
 * the object's size), loads it. On success *out owns the object; free it with cx_close. */
int cx_open(const char *path, uint32_t route_entries, uint32_t egress_entries, cx_fast_path **out, char *message,
            size_t message_len);

/* Resizing the route maps: the program loaded again with route maps of another size, sharing
 * tr_config, tr_counters, tr_egress and tr_scratch with the running one, every route copied, then
 * swapped onto every link. In steps, so that the slow ones (load and copy: a fifth of a second for
 * 49,152 routes; the swap) need not hold up route changes:
 *
 * 1. cx_resize_prepare loads the object again (the image read by cx_open, not the file) with
 *    route maps of `route_entries` and copies every route of fp's maps into them. fp's routes may
 *    change meanwhile (cx_route_add / _delete from other threads): the caller records each change
 *    made after prepare began and
 * 2. replays it on the new maps with cx_resize_route_add / _delete (same results as
 *    cx_route_add / _delete) while no route changes. From then on it makes each route change on
 *    both fp's maps and the new ones, until adopt.
 * 3. cx_resize_swap_links swaps the program on every link (bpf_link_update); on a failure it
 *    swaps back the links it had swapped and the running program and its maps stay as they were.
 *    A link whose interface has been deleted (ENOLINK) is no failure: adopt drops it.
 * 4. cx_resize_adopt (after a successful swap) makes the new object fp's; cx_attached_count and
 *    cx_attached_ifindex then leave out dropped links.
 * 5. cx_resize_finish frees the resize and the object it holds: the old one after adopt, else
 *    the new one (any step may stop here).
 * Nothing else may use fp's object meanwhile (cx_close, another resize). 0 or -errno. */
typedef struct cx_resize cx_resize;
int cx_resize_prepare(cx_fast_path *fp, uint32_t route_entries, cx_resize **out, char *message, size_t message_len);
int cx_resize_route_add(cx_resize *r, const struct tr_client_key *ck, const struct tr_client_value *cv,
                        const struct tr_peer_key *pk, const struct tr_peer_value *pv);
int cx_resize_route_delete(cx_resize *r, const struct tr_client_key *ck, const struct tr_peer_key *pk);
uint32_t cx_resize_capacity(const cx_resize *r);
int cx_resize_swap_links(cx_fast_path *fp, cx_resize *r, char *message, size_t message_len);
void cx_resize_adopt(cx_fast_path *fp, cx_resize *r);
void cx_resize_finish(cx_resize *r);

/* Attaches the program to `ifindex` through a BPF link in `mode`, and adds the interface to
 * tr_egress (where TR_CONFIG_FIB may redirect packets to). The link lives as long as this process
 * holds its fd: a crash detaches it. Returns 0 or -errno. */
int cx_attach(cx_fast_path *fp, int ifindex, int mode, char *message, size_t message_len);

/* The ifindex the i-th link is attached to now, as the kernel reports it: 0 once the kernel has
 * released the link (its interface was deleted), -errno when the query fails. */
int cx_link_ifindex_now(const cx_fast_path *fp, int i);

/* Closes the i-th link (its interface is gone) and removes the interface it was attached to from
 * tr_egress; the links after it move down by one. Returns 0 or -EINVAL. Not while a resize is
 * between cx_resize_prepare and cx_resize_finish (the swap walks the links). */
int cx_drop_link(cx_fast_path *fp, int i);

/* A netlink socket (NETLINK_ROUTE, non-blocking) subscribed to link and address changes in the
 * calling thread's network namespace: fd or -errno. */
int cx_link_events_open(void);

/* Reads every message pending on a cx_link_events_open socket without blocking: how many were
 * link or address changes (messages the kernel dropped for an overrun, ENOBUFS, count as one, so
 * that the caller checks everything again), or -errno. */
int cx_link_events_drain(int fd);

/* Whether `ifindex` is in tr_egress: 1, 0, or -errno (tests, diagnostics). */
int cx_egress_contains(cx_fast_path *fp, int ifindex);

/* Number of interfaces attached, and the ifindex of the i-th (0 <= i < count; 0 otherwise). */
int cx_attached_count(const cx_fast_path *fp);
int cx_attached_ifindex(const cx_fast_path *fp, int i);

/* Writes the one configuration entry. */
int cx_set_config(cx_fast_path *fp, const struct tr_config *config, char *message, size_t message_len);

/* Installs (or replaces) one route in both maps. 0, CX_ROUTE_MAP_FULL (nothing left installed),
 * or -errno. */
int cx_route_add(cx_fast_path *fp, const struct tr_client_key *ck, const struct tr_client_value *cv,
                 const struct tr_peer_key *pk, const struct tr_peer_value *pv);

/* Removes one route from both maps; a missing entry is not an error. 0 or -errno. */
int cx_route_delete(cx_fast_path *fp, const struct tr_client_key *ck, const struct tr_peer_key *pk);

/* Map lookups (tests, diagnostics): 0, -ENOENT, or -errno. */
int cx_lookup_client(cx_fast_path *fp, const struct tr_client_key *key, struct tr_client_value *value);
int cx_lookup_peer(cx_fast_path *fp, const struct tr_peer_key *key, struct tr_peer_value *value);

/* Sums tr_counters over every possible CPU into out[0..TR_COUNTER_COUNT). 0 or -errno. */
int cx_read_counters(cx_fast_path *fp, uint64_t out[TR_COUNTER_COUNT]);

/* The route maps' size (as last loaded or resized). */
uint32_t cx_route_capacity(const cx_fast_path *fp);

/* The running program's kernel id (what `ip link` / bpftool show; it changes with a resize), 0 if unknown. */
uint32_t cx_program_id(const cx_fast_path *fp);

/* The XDP program id attached to ifindex (any mode), 0 when none; -errno on failure. */
int64_t cx_query_attached(int ifindex);

/* Detaches every link (closing their fds) and frees the object and its maps. NULL is fine. */
void cx_close(cx_fast_path *fp);

#endif /* CXDP_H */
