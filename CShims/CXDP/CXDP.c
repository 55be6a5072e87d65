// The XDP fast path's loader over libbpf (see include/CXDP.h).
#include "CXDP.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CX_MAX_LINKS 64

struct cx_fast_path {
    struct bpf_object *object;
    int program_fd;
    int client_routes_fd;
    int peer_routes_fd;
    int config_fd;
    int counters_fd;
    int egress_fd;
    uint32_t route_capacity;
    uint32_t program_id;
    int cpus;
    int link_fds[CX_MAX_LINKS];
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

int cx_open(const char *path, uint32_t route_entries, uint32_t egress_entries, cx_fast_path **out, char *message,
            size_t message_len)
{
    pthread_once(&print_once, install_print);
    last_libbpf_message[0] = 0;
    *out = NULL;
    if (access(path, R_OK) != 0)
        return fail(errno, "open the BPF object", message, message_len);
    struct bpf_object *object = bpf_object__open_file(path, NULL);
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
    if (bpf_object__load(object)) {
        int e = errno;
        bpf_object__close(object);
        return fail(e, "load the BPF program (bpf())", message, message_len);
    }
    struct bpf_program *program = bpf_object__find_program_by_name(object, "turn_router");
    cx_fast_path *fp = calloc(1, sizeof *fp);
    int cpus = libbpf_num_possible_cpus();
    if (!program || !fp || cpus <= 0) {
        free(fp);
        bpf_object__close(object);
        return fail(!program ? ENOENT : cpus < 0 ? -cpus : ENOMEM, "find the program turn_router", message,
                    message_len);
    }
    fp->object = object;
    fp->program_fd = bpf_program__fd(program);
    fp->client_routes_fd = map_fd(object, "tr_client_routes");
    fp->peer_routes_fd = map_fd(object, "tr_peer_routes");
    fp->config_fd = map_fd(object, "tr_config");
    fp->counters_fd = map_fd(object, "tr_counters");
    fp->egress_fd = map_fd(object, "tr_egress");
    fp->route_capacity = bpf_map__max_entries(bpf_object__find_map_by_name(object, "tr_client_routes"));
    fp->cpus = cpus;
    if (fp->client_routes_fd < 0 || fp->peer_routes_fd < 0 || fp->config_fd < 0 || fp->counters_fd < 0 ||
        fp->egress_fd < 0) {
        cx_close(fp);
        return fail(ENOENT, "find the maps tr_config and tr_counters", message, message_len);
    }
    struct bpf_prog_info info;
    uint32_t info_len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fp->program_fd, &info, &info_len) == 0)
        fp->program_id = info.id;
    *out = fp;
    return 0;
}

int cx_attach(cx_fast_path *fp, int ifindex, int mode, char *message, size_t message_len)
{
    last_libbpf_message[0] = 0;
    if (fp->links >= CX_MAX_LINKS)
        return fail(ENOSPC, "attach (too many interfaces)", message, message_len);
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = mode == CX_MODE_GENERIC ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(fp->program_fd, ifindex, BPF_XDP, &opts);
    if (fd < 0)
        return fail(errno, mode == CX_MODE_GENERIC ? "attach in generic (skb) mode" : "attach in native (driver) mode",
                    message, message_len);
    uint32_t key = (uint32_t)ifindex, value = (uint32_t)ifindex;
    if (bpf_map_update_elem(fp->egress_fd, &key, &value, BPF_ANY)) {
        int e = errno;
        close(fd);
        return fail(e, "add the interface to tr_egress", message, message_len);
    }
    fp->link_fds[fp->links++] = fd;
    return 0;
}

int cx_egress_contains(cx_fast_path *fp, int ifindex)
{
    uint32_t key = (uint32_t)ifindex, value = 0;
    if (bpf_map_lookup_elem(fp->egress_fd, &key, &value) == 0)
        return value == key;
    return errno == ENOENT ? 0 : -errno;
}

int cx_attached_count(const cx_fast_path *fp) { return fp ? fp->links : 0; }

int cx_set_config(cx_fast_path *fp, const struct tr_config *config, char *message, size_t message_len)
{
    uint32_t zero = 0;
    if (bpf_map_update_elem(fp->config_fd, &zero, config, BPF_ANY))
        return fail(errno, "write tr_config", message, message_len);
    return 0;
}

static int is_full(int e) { return e == E2BIG || e == ENOSPC || e == ENOMEM; }

int cx_route_add(cx_fast_path *fp, const struct tr_client_key *ck, const struct tr_client_value *cv,
                 const struct tr_peer_key *pk, const struct tr_peer_value *pv)
{
    if (bpf_map_update_elem(fp->client_routes_fd, ck, cv, BPF_ANY)) {
        int e = errno;
        return is_full(e) ? CX_ROUTE_MAP_FULL : -e;
    }
    if (bpf_map_update_elem(fp->peer_routes_fd, pk, pv, BPF_ANY)) {
        int e = errno;
        /* Half a route would relay one direction only: take the client half back out. */
        bpf_map_delete_elem(fp->client_routes_fd, ck);
        return is_full(e) ? CX_ROUTE_MAP_FULL : -e;
    }
    return 0;
}

int cx_route_delete(cx_fast_path *fp, const struct tr_client_key *ck, const struct tr_peer_key *pk)
{
    int rc = 0;
    if (bpf_map_delete_elem(fp->client_routes_fd, ck) && errno != ENOENT)
        rc = -errno;
    if (bpf_map_delete_elem(fp->peer_routes_fd, pk) && errno != ENOENT)
        rc = -errno;
    return rc;
}

int cx_lookup_client(cx_fast_path *fp, const struct tr_client_key *key, struct tr_client_value *value)
{
    return bpf_map_lookup_elem(fp->client_routes_fd, key, value) ? -errno : 0;
}

int cx_lookup_peer(cx_fast_path *fp, const struct tr_peer_key *key, struct tr_peer_value *value)
{
    return bpf_map_lookup_elem(fp->peer_routes_fd, key, value) ? -errno : 0;
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
        if (bpf_map_lookup_elem(fp->counters_fd, &i, per_cpu)) {
            rc = -errno;
            break;
        }
        for (int c = 0; c < fp->cpus; c++)
            out[i] += per_cpu[c];
    }
    free(per_cpu);
    return rc;
}

uint32_t cx_route_capacity(const cx_fast_path *fp) { return fp->route_capacity; }

uint32_t cx_program_id(const cx_fast_path *fp) { return fp->program_id; }

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
    if (fp->object)
        bpf_object__close(fp->object);
    free(fp);
}
