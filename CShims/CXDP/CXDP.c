// The XDP fast path's loader over libbpf (see include/CXDP.h).
#include "CXDP.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CX_MAX_LINKS 64

/* A loaded object and the descriptors of its program and maps. */
struct loaded {
    struct bpf_object *object;
    int program_fd;
    int client_routes_fd;
    int peer_routes_fd;
    int config_fd;
    int counters_fd;
    int egress_fd;
    uint32_t route_capacity;
    uint32_t program_id;
};

struct cx_fast_path {
    /* The object file as read at cx_open: a resize loads this very image again, never the file,
     * which a package upgrade may have replaced (or removed) by then. */
    void *image;
    size_t image_len;
    struct loaded now;
    int cpus;
    int link_fds[CX_MAX_LINKS];
    int link_ifindex[CX_MAX_LINKS]; /* the interface each link was attached to */
    int links;
};

/* libbpf prints its warnings (the verifier's log among them) through one global callback; the
 * relay logs one warning of its own instead, so libbpf's last warning is kept per thread and
 * appended to the step's message. */
static __thread char last_libbpf_message[512];

static int capture_print(enum libbpf_print_level level, const char *format, va_list args)
{
    if (level > LIBBPF_WARN)
        return 0;
    char line[512];
    int n = vsnprintf(line, sizeof line, format, args);
    if (n <= 0)
        return 0;
    /* One line: newlines become "; ", trailing ones dropped. */
    size_t len = strnlen(line, sizeof line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == ' '))
        line[--len] = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n')
            line[i] = ' ';
    snprintf(last_libbpf_message, sizeof last_libbpf_message, "%s", line);
    return 0;
}

static pthread_once_t print_once = PTHREAD_ONCE_INIT;
static void install_print(void) { libbpf_set_print(capture_print); }

/* "step: strerror (libbpf: ...)"; returns -err. */
static int fail(int err, const char *step, char *message, size_t message_len)
{
    if (err <= 0)
        err = EINVAL;
    if (message && message_len) {
        if (last_libbpf_message[0])
            snprintf(message, message_len, "%s: %s (%s)", step, strerror(err), last_libbpf_message);
        else
            snprintf(message, message_len, "%s: %s", step, strerror(err));
    }
    return -err;
}

static int map_fd(struct bpf_object *object, const char *name)
{
    struct bpf_map *map = bpf_object__find_map_by_name(object, name);
    return map ? bpf_map__fd(map) : -1;
}

/* The maps a resized program shares with the one it replaces: everything but the route maps. */
static const char *const shared_maps[] = {"tr_config", "tr_counters", "tr_egress", "tr_scratch"};

/* Reads the whole file at `path` into a new buffer. 0 or -errno. */
static int read_image(const char *path, void **image, size_t *image_len)
{
    *image = NULL;
    *image_len = 0;
    FILE *file = fopen(path, "rb");
    if (!file)
        return -errno;
    struct stat st;
    int rc = fstat(fileno(file), &st) ? -errno : st.st_size <= 0 ? -ENOEXEC : 0;
    unsigned char *buffer = rc ? NULL : malloc((size_t)st.st_size);
    if (!rc && !buffer)
        rc = -ENOMEM;
    if (!rc && fread(buffer, 1, (size_t)st.st_size, file) != (size_t)st.st_size)
        rc = -EIO;
    fclose(file);
    if (rc) {
        free(buffer);
        return rc;
    }
    *image = buffer;
    *image_len = (size_t)st.st_size;
    return 0;
}

/* Opens and loads the object in `image` with both route maps sized to `route_entries` (0: the
 * object's size) and tr_egress to `egress_entries` (0: the object's). With `reuse`, the maps in
 * shared_maps are that object's (same configuration, counters and egress set). */
static int load_object(const void *image, size_t image_len, uint32_t route_entries, uint32_t egress_entries,
                       struct bpf_object *reuse, struct bpf_object **out, char *message, size_t message_len)
{
    *out = NULL;
    LIBBPF_OPTS(bpf_object_open_opts, open_opts, .object_name = "turn_router");
    struct bpf_object *object = bpf_object__open_mem(image, image_len, &open_opts);
    if (!object)
        return fail(errno, "open the BPF object", message, message_len);
    const char *route_maps[] = {"tr_client_routes", "tr_peer_routes"};
    for (int i = 0; i < 2; i++) {
        struct bpf_map *map = bpf_object__find_map_by_name(object, route_maps[i]);
        if (!map) {
            bpf_object__close(object);
            return fail(ENOENT, "find the route maps in the object", message, message_len);
        }
        if (route_entries && bpf_map__set_max_entries(map, route_entries)) {
            int e = errno;
            bpf_object__close(object);
            return fail(e, "size the route maps", message, message_len);
        }
    }
    struct bpf_map *egress = bpf_object__find_map_by_name(object, "tr_egress");
    if (!egress) {
        bpf_object__close(object);
        return fail(ENOENT, "find the map tr_egress in the object", message, message_len);
    }
    if (egress_entries && bpf_map__set_max_entries(egress, egress_entries)) {
        int e = errno;
        bpf_object__close(object);
        return fail(e, "size the map tr_egress", message, message_len);
    }
    for (size_t i = 0; reuse && i < sizeof shared_maps / sizeof shared_maps[0]; i++) {
        struct bpf_map *map = bpf_object__find_map_by_name(object, shared_maps[i]);
        int fd = map_fd(reuse, shared_maps[i]);
        if (!map || fd < 0 || bpf_map__reuse_fd(map, fd)) {
            int e = map ? errno : ENOENT;
            bpf_object__close(object);
            return fail(e, "share the maps with the running program", message, message_len);
        }
    }
    if (bpf_object__load(object)) {
        int e = errno;
        bpf_object__close(object);
        return fail(e, "load the BPF program (bpf())", message, message_len);
    }
    *out = object;
    return 0;
}

/* Fills `l` from `object` (loaded by load_object). 0, or -ENOENT when a map or the program is
 * missing. */
static int adopt(struct loaded *l, struct bpf_object *object)
{
    struct bpf_program *program = bpf_object__find_program_by_name(object, "turn_router");
    struct bpf_map *client_routes = bpf_object__find_map_by_name(object, "tr_client_routes");
    if (!program || !client_routes)
        return -ENOENT;
    struct loaded n = {
        .object = object,
        .program_fd = bpf_program__fd(program),
        .client_routes_fd = map_fd(object, "tr_client_routes"),
        .peer_routes_fd = map_fd(object, "tr_peer_routes"),
        .config_fd = map_fd(object, "tr_config"),
        .counters_fd = map_fd(object, "tr_counters"),
        .egress_fd = map_fd(object, "tr_egress"),
        .route_capacity = bpf_map__max_entries(client_routes),
    };
    if (n.program_fd < 0 || n.client_routes_fd < 0 || n.peer_routes_fd < 0 || n.config_fd < 0 || n.counters_fd < 0 ||
        n.egress_fd < 0)
        return -ENOENT;
    struct bpf_prog_info info;
    uint32_t info_len = sizeof info;
    memset(&info, 0, sizeof info);
    n.program_id = bpf_obj_get_info_by_fd(n.program_fd, &info, &info_len) == 0 ? info.id : 0;
    *l = n;
    return 0;
}

int cx_open(const char *path, uint32_t route_entries, uint32_t egress_entries, cx_fast_path **out, char *message,
            size_t message_len)
{
    pthread_once(&print_once, install_print);
    last_libbpf_message[0] = 0;
    *out = NULL;
    void *image;
    size_t image_len;
    int rc = read_image(path, &image, &image_len);
    if (rc)
        return fail(-rc, "open the BPF object", message, message_len);
    struct bpf_object *object;
    rc = load_object(image, image_len, route_entries, egress_entries, NULL, &object, message, message_len);
    if (rc) {
        free(image);
        return rc;
    }
    cx_fast_path *fp = calloc(1, sizeof *fp);
    int cpus = libbpf_num_possible_cpus();
    if (!fp || cpus <= 0) {
        free(fp);
        free(image);
        bpf_object__close(object);
        return fail(cpus < 0 ? -cpus : ENOMEM, "set up the loader", message, message_len);
    }
    fp->image = image;
    fp->image_len = image_len;
    fp->cpus = cpus;
    if (adopt(&fp->now, object)) {
        fp->now.object = object;
        cx_close(fp);
        return fail(ENOENT, "find the program turn_router and its maps", message, message_len);
    }
    *out = fp;
    return 0;
}

/* Copies every entry of map `from` into map `to` in chunks (BPF_MAP_LOOKUP_BATCH and
 * BPF_MAP_UPDATE_BATCH: a syscall per few thousand routes, not two per route). 0 or -errno. */
static int copy_entries_batched(int from, int to, size_t key_size, size_t value_size)
{
    enum { CHUNK = 4096 };
    unsigned char in_token[64], out_token[64];
    void *keys = malloc(CHUNK * key_size), *values = malloc(CHUNK * value_size);
    int rc = 0;
    if (!keys || !values || key_size > sizeof in_token) {
        rc = !keys || !values ? -ENOMEM : -EINVAL;
        goto out;
    }
    for (int first = 1;; first = 0) {
        __u32 count = CHUNK;
        int failed = bpf_map_lookup_batch(from, first ? NULL : in_token, out_token, keys, values, &count, NULL);
        int done = failed && errno == ENOENT;
        if (failed && !done) {
            rc = -errno;
            break;
        }
        if (count) {
            __u32 n = count;
            if (bpf_map_update_batch(to, keys, values, &n, NULL)) {
                rc = -errno;
                break;
            }
        }
        if (done)
            break;
        memcpy(in_token, out_token, sizeof in_token);
    }
out:
    free(keys);
    free(values);
    return rc;
}

/* Copies every entry of map `from` into map `to` (same key and value sizes): in chunks, or one by
 * one where the kernel has no batch operations for the map. 0 or -errno. */
static int copy_entries(int from, int to, size_t key_size, size_t value_size)
{
    if (copy_entries_batched(from, to, key_size, value_size) == 0)
        return 0;
    unsigned char key[64], next[64], value[64];
    if (key_size > sizeof key || value_size > sizeof value)
        return -EINVAL;
    void *previous = NULL;
    while (bpf_map_get_next_key(from, previous, next) == 0) {
        memcpy(key, next, key_size);
        previous = key;
        if (bpf_map_lookup_elem(from, key, value)) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        if (bpf_map_update_elem(to, key, value, BPF_ANY))
            return -errno;
    }
    return errno == ENOENT ? 0 : -errno;
}

static int is_full(int e) { return e == E2BIG || e == ENOSPC || e == ENOMEM; }

static int route_add(const struct loaded *l, const struct tr_client_key *ck, const struct tr_client_value *cv,
                     const struct tr_peer_key *pk, const struct tr_peer_value *pv)
{
    if (bpf_map_update_elem(l->client_routes_fd, ck, cv, BPF_ANY)) {
        int e = errno;
        return is_full(e) ? CX_ROUTE_MAP_FULL : -e;
    }
    if (bpf_map_update_elem(l->peer_routes_fd, pk, pv, BPF_ANY)) {
        int e = errno;
        /* Half a route would relay one direction only: take the client half back out. */
        bpf_map_delete_elem(l->client_routes_fd, ck);
        return is_full(e) ? CX_ROUTE_MAP_FULL : -e;
    }
    return 0;
}

static int route_delete(const struct loaded *l, const struct tr_client_key *ck, const struct tr_peer_key *pk)
{
    int rc = 0;
    if (bpf_map_delete_elem(l->client_routes_fd, ck) && errno != ENOENT)
        rc = -errno;
    if (bpf_map_delete_elem(l->peer_routes_fd, pk) && errno != ENOENT)
        rc = -errno;
    return rc;
}

struct cx_resize {
    struct loaded next;     /* the new object until adopted, then the old one (freed by finish) */
    int gone[CX_MAX_LINKS]; /* links found released by cx_resize_swap_links (ENOLINK) */
};

int cx_resize_prepare(cx_fast_path *fp, uint32_t route_entries, cx_resize **out, char *message, size_t message_len)
{
    last_libbpf_message[0] = 0;
    *out = NULL;
    struct bpf_map *egress = bpf_object__find_map_by_name(fp->now.object, "tr_egress");
    struct bpf_object *object;
    int rc = load_object(fp->image, fp->image_len, route_entries, egress ? bpf_map__max_entries(egress) : 0,
                         fp->now.object, &object, message, message_len);
    if (rc)
        return rc;
    cx_resize *r = calloc(1, sizeof *r);
    if (!r) {
        bpf_object__close(object);
        return fail(ENOMEM, "set up the resize", message, message_len);
    }
    r->next.object = object;
    if (adopt(&r->next, object)) {
        cx_resize_finish(r);
        return fail(ENOENT, "find the program turn_router and its maps", message, message_len);
    }
    /* The routes as they are now; what changes from here on the caller replays
     * (cx_resize_route_add / _delete). A route added or deleted while a chunk is copied may be
     * copied or not: the replay settles it. */
    rc = copy_entries(fp->now.client_routes_fd, r->next.client_routes_fd, sizeof(struct tr_client_key),
                      sizeof(struct tr_client_value));
    if (!rc)
        rc = copy_entries(fp->now.peer_routes_fd, r->next.peer_routes_fd, sizeof(struct tr_peer_key),
                          sizeof(struct tr_peer_value));
    if (rc) {
        cx_resize_finish(r);
        return fail(-rc, "copy the routes into the resized maps", message, message_len);
    }
    *out = r;
    return 0;
}

int cx_resize_route_add(cx_resize *r, const struct tr_client_key *ck, const struct tr_client_value *cv,
                        const struct tr_peer_key *pk, const struct tr_peer_value *pv)
{
    return route_add(&r->next, ck, cv, pk, pv);
}

int cx_resize_route_delete(cx_resize *r, const struct tr_client_key *ck, const struct tr_peer_key *pk)
{
    return route_delete(&r->next, ck, pk);
}

uint32_t cx_resize_capacity(const cx_resize *r) { return r->next.route_capacity; }

int cx_resize_swap_links(cx_fast_path *fp, cx_resize *r, char *message, size_t message_len)
{
    last_libbpf_message[0] = 0;
    /* The old program runs until its link is switched, on routes the same as the new maps'. A
     * link whose interface was deleted since (the kernel released it: ENOLINK) carries nothing
     * and is dropped at adopt, not a failure: it would fail every later resize, too. Any other
     * failure is undone, so that every interface runs one program. */
    memset(r->gone, 0, sizeof r->gone);
    for (int i = 0; i < fp->links; i++) {
        if (bpf_link_update(fp->link_fds[i], r->next.program_fd, NULL) == 0)
            continue;
        int e = errno;
        if (e == ENOLINK) {
            r->gone[i] = 1;
            continue;
        }
        for (int j = 0; j < i; j++)
            if (!r->gone[j])
                bpf_link_update(fp->link_fds[j], fp->now.program_fd, NULL);
        return fail(e, "replace the program on its links (bpf_link_update)", message, message_len);
    }
    return 0;
}

void cx_resize_adopt(cx_fast_path *fp, cx_resize *r)
{
    struct loaded old = fp->now;
    fp->now = r->next;
    r->next = old;
    int kept = 0;
    for (int i = 0; i < fp->links; i++) {
        if (r->gone[i]) {
            close(fp->link_fds[i]);
            continue;
        }
        fp->link_fds[kept] = fp->link_fds[i];
        fp->link_ifindex[kept] = fp->link_ifindex[i];
        kept++;
    }
    fp->links = kept;
}

void cx_resize_finish(cx_resize *r)
{
    if (!r)
        return;
    if (r->next.object)
        bpf_object__close(r->next.object);
    free(r);
}

int cx_attach(cx_fast_path *fp, int ifindex, int mode, char *message, size_t message_len)
{
    last_libbpf_message[0] = 0;
    if (fp->links >= CX_MAX_LINKS)
        return fail(ENOSPC, "attach (too many interfaces)", message, message_len);
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = mode == CX_MODE_GENERIC ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(fp->now.program_fd, ifindex, BPF_XDP, &opts);
    if (fd < 0)
        return fail(errno, mode == CX_MODE_GENERIC ? "attach in generic (skb) mode" : "attach in native (driver) mode",
                    message, message_len);
    uint32_t key = (uint32_t)ifindex, value = (uint32_t)ifindex;
    if (bpf_map_update_elem(fp->now.egress_fd, &key, &value, BPF_ANY)) {
        int e = errno;
        close(fd);
        return fail(e, "add the interface to tr_egress", message, message_len);
    }
    fp->link_ifindex[fp->links] = ifindex;
    fp->link_fds[fp->links++] = fd;
    return 0;
}

int cx_link_ifindex_now(const cx_fast_path *fp, int i)
{
    if (!fp || i < 0 || i >= fp->links)
        return -EINVAL;
    struct bpf_link_info info;
    memset(&info, 0, sizeof info);
    uint32_t length = sizeof info;
    if (bpf_obj_get_info_by_fd(fp->link_fds[i], &info, &length))
        return -errno;
    return (int)info.xdp.ifindex;
}

int cx_drop_link(cx_fast_path *fp, int i)
{
    if (!fp || i < 0 || i >= fp->links)
        return -EINVAL;
    /* A deleted interface's entry has left the devmap with it; one still present would take the
     * place a new interface needs (tr_egress holds as many as there are interfaces). */
    uint32_t key = (uint32_t)fp->link_ifindex[i];
    bpf_map_delete_elem(fp->now.egress_fd, &key);
    close(fp->link_fds[i]);
    for (int j = i + 1; j < fp->links; j++) {
        fp->link_fds[j - 1] = fp->link_fds[j];
        fp->link_ifindex[j - 1] = fp->link_ifindex[j];
    }
    fp->links--;
    return 0;
}

int cx_link_events_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl address = {
        .nl_family = AF_NETLINK,
        .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
    };
    if (bind(fd, (struct sockaddr *)&address, sizeof address)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cx_link_events_drain(int fd)
{
    char buffer[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
    int changes = 0;
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return changes;
            if (errno == ENOBUFS) { /* some were lost: check everything */
                changes++;
                continue;
            }
            return -errno;
        }
        if (n == 0)
            return changes;
        int left = (int)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            switch (h->nlmsg_type) {
            case RTM_NEWLINK:
            case RTM_DELLINK:
            case RTM_NEWADDR:
            case RTM_DELADDR:
                changes++;
                break;
            default:
                break;
            }
        }
    }
}

int cx_egress_contains(cx_fast_path *fp, int ifindex)
{
    uint32_t key = (uint32_t)ifindex, value = 0;
    if (bpf_map_lookup_elem(fp->now.egress_fd, &key, &value) == 0)
        return value == key;
    return errno == ENOENT ? 0 : -errno;
}

int cx_attached_count(const cx_fast_path *fp) { return fp ? fp->links : 0; }

int cx_attached_ifindex(const cx_fast_path *fp, int i) { return fp && i >= 0 && i < fp->links ? fp->link_ifindex[i] : 0; }

int cx_set_config(cx_fast_path *fp, const struct tr_config *config, char *message, size_t message_len)
{
    uint32_t zero = 0;
    if (bpf_map_update_elem(fp->now.config_fd, &zero, config, BPF_ANY))
        return fail(errno, "write tr_config", message, message_len);
    return 0;
}

int cx_route_add(cx_fast_path *fp, const struct tr_client_key *ck, const struct tr_client_value *cv,
                 const struct tr_peer_key *pk, const struct tr_peer_value *pv)
{
    return route_add(&fp->now, ck, cv, pk, pv);
}

int cx_route_delete(cx_fast_path *fp, const struct tr_client_key *ck, const struct tr_peer_key *pk)
{
    return route_delete(&fp->now, ck, pk);
}

int cx_lookup_client(cx_fast_path *fp, const struct tr_client_key *key, struct tr_client_value *value)
{
    return bpf_map_lookup_elem(fp->now.client_routes_fd, key, value) ? -errno : 0;
}

int cx_lookup_peer(cx_fast_path *fp, const struct tr_peer_key *key, struct tr_peer_value *value)
{
    return bpf_map_lookup_elem(fp->now.peer_routes_fd, key, value) ? -errno : 0;
}

int cx_read_counters(cx_fast_path *fp, uint64_t out[TR_COUNTER_COUNT])
{
    /* Per call, not per object: scrapes and exports may read from several threads at once. */
    uint64_t *per_cpu = calloc((size_t)fp->cpus, sizeof(uint64_t));
    if (!per_cpu)
        return -ENOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < TR_COUNTER_COUNT; i++) {
        out[i] = 0;
        if (bpf_map_lookup_elem(fp->now.counters_fd, &i, per_cpu)) {
            rc = -errno;
            break;
        }
        for (int c = 0; c < fp->cpus; c++)
            out[i] += per_cpu[c];
    }
    free(per_cpu);
    return rc;
}

uint32_t cx_route_capacity(const cx_fast_path *fp) { return fp->now.route_capacity; }

uint32_t cx_program_id(const cx_fast_path *fp) { return fp->now.program_id; }

int64_t cx_query_attached(int ifindex)
{
    uint32_t id = 0;
    int rc = bpf_xdp_query_id(ifindex, 0, &id);
    return rc < 0 ? rc : (int64_t)id;
}

void cx_close(cx_fast_path *fp)
{
    if (!fp)
        return;
    for (int i = 0; i < fp->links; i++)
        close(fp->link_fds[i]);
    fp->links = 0;
    if (fp->now.object)
        bpf_object__close(fp->now.object);
    free(fp->image);
    free(fp);
}
