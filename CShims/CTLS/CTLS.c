/*
 * CTLS — TLS over OpenSSL memory BIOs (include/CTLS.h). The only file that includes OpenSSL.
 */
#include "CTLS.h"

#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct ct_context {
    SSL_CTX *ctx;
};

/* Session states: open, or the terminal result every later read returns. */
enum { CT_STATE_OPEN = 0 };

struct ct_session {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer (owned by ssl) */
    BIO *wbio; /* ciphertext to the peer (owned by ssl) */
    int state; /* CT_STATE_OPEN, CT_CLOSED, CT_FATAL */
    int shut;  /* ct_session_shutdown was called */
    int renegotiation_refused;
    int established; /* the first handshake finished (OpenSSL's own flag is reset by a failure) */
    int trimmed;     /* CT_TRIMMED_*: the BIO drained after the handshake was replaced */
    int category;
    char error[128];
};

/* A drained memory BIO keeps its buffer (BIO_s_mem never shrinks). One whose buffer is bigger than
 * this is replaced by a fresh, bufferless one once drained, and so is each of the two the first time
 * they are drained after the handshake (they held its flights): an idle session holds no record-sized
 * buffers, while a stream of small records reuses its buffers. */
#define CT_KEEP_BUFFER_MAX 4096
enum { CT_TRIMMED_READ = 1, CT_TRIMMED_WRITE = 2 };

/* ---- errors ---------------------------------------------------------------------------------- */

/* Writes OpenSSL's first queued error (or `fallback`) after `what` into err, and clears the queue. */
static void context_error(char *err, size_t errlen, const char *what, const char *path) {
    unsigned long e = ERR_peek_error();
    char reason[256];
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    } else {
        snprintf(reason, sizeof(reason), "no OpenSSL error");
    }
    if (err != NULL && errlen > 0) {
        if (path != NULL) {
            snprintf(err, errlen, "%s %s: %s", what, path, reason);
        } else {
            snprintf(err, errlen, "%s: %s", what, reason);
        }
    }
    ERR_clear_error();
}

static void set_message(char *err, size_t errlen, const char *message) {
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", message);
    }
}

/* Records why a session failed: OpenSSL's earliest queued reason, its category. Clears the queue. */
static void session_fail(ct_session *s, int ssl_error) {
    if (s->state != CT_STATE_OPEN) {
        ERR_clear_error();
        return;
    }
    s->state = CT_FATAL;
    unsigned long e = ERR_peek_error();
    int reason = e != 0 ? ERR_GET_REASON(e) : 0;
    const char *text = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (s->renegotiation_refused) {
        s->category = CT_ERROR_RENEGOTIATION;
        text = "renegotiation refused";
    } else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL && reason == SSL_R_NO_RENEGOTIATION) {
        /* A client whose renegotiation the server refused. */
        s->category = CT_ERROR_RENEGOTIATION;
    } else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
        /* SSL_R_SSLV3_ALERT_* / SSL_R_TLSV1_ALERT_*: the peer's alert, description + 1000. */
        s->category = CT_ERROR_ALERT;
    } else if (!s->established) {
        s->category = CT_ERROR_HANDSHAKE;
    } else {
        s->category = CT_ERROR_OTHER;
    }
    if (text != NULL) {
        snprintf(s->error, sizeof(s->error), "%s", text);
    } else if (e != 0) {
        ERR_error_string_n(e, s->error, sizeof(s->error));
    } else if (ssl_error == SSL_ERROR_SYSCALL) {
        snprintf(s->error, sizeof(s->error), "unexpected end of input");
    } else {
        snprintf(s->error, sizeof(s->error), "TLS error %d", ssl_error);
    }
    ERR_clear_error();
}

/* ---- contexts -------------------------------------------------------------------------------- */

/* ALPN (RFC 7301) on the server: "stun.turn" (RFC 7443) when the client offers it; a client that
 * offers only other protocols gets no ALPN extension back (lenient: the handshake goes on, instead
 * of the RFC's no_application_protocol alert). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    static const char wanted[] = CT_ALPN_STUN_TURN;
    const size_t wanted_len = sizeof(wanted) - 1;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int len = in[i];
        if (len == 0 || len > inlen - i - 1) {
            break; /* malformed list: OpenSSL has checked it already; be safe anyway */
        }
        if (len == wanted_len && memcmp(in + i + 1, wanted, wanted_len) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static ct_context *context_wrap(SSL_CTX *ctx, char *err, size_t errlen) {
    ct_context *c = OPENSSL_zalloc(sizeof(*c));
    if (c == NULL) {
        set_message(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        return NULL;
    }
    c->ctx = ctx;
    return c;
}

/* What both roles share: TLS 1.2..1.3, no compression, record buffers released while idle. */
static SSL_CTX *context_base(const SSL_METHOD *method, char *err, size_t errlen) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        context_error(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        context_error(err, errlen, "setting the TLS versions", NULL);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

ct_context *ct_server_context_new(const char *cert_chain_pem_path, const char *key_pem_path, char *err, size_t errlen) {
    if (cert_chain_pem_path == NULL || key_pem_path == NULL) {
        set_message(err, errlen, "no certificate or key path");
        return NULL;
    }
    SSL_CTX *ctx = context_base(TLS_server_method(), err, errlen);
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Resumption through session tickets only: no per-session state in the context's cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);

    if (SSL_CTX_use_certificate_chain_file(ctx, cert_chain_pem_path) != 1) {
        context_error(err, errlen, "loading the certificate chain", cert_chain_pem_path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_pem_path, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL compares the key with the certificate already loaded here. */
        unsigned long e = ERR_peek_error();
        int mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
        context_error(err, errlen,
                      mismatch ? "the private key does not match the certificate: key" : "loading the private key",
                      key_pem_path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        context_error(err, errlen, "the private key does not match the certificate: key", key_pem_path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    return context_wrap(ctx, err, errlen);
}

ct_context *ct_client_context_new(const char *alpn_or_null, char *err, size_t errlen) {
    SSL_CTX *ctx = context_base(TLS_client_method(), err, errlen);
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (alpn_or_null != NULL) {
        /* "a,b,c" → the wire's list of length-prefixed names. */
        unsigned char wire[512];
        size_t used = 0;
        const char *p = alpn_or_null;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
            if (len == 0 || len > 255 || used + 1 + len > sizeof(wire)) {
                set_message(err, errlen, "ALPN: comma-separated protocols of 1 to 255 bytes, 511 bytes in all");
                SSL_CTX_free(ctx);
                return NULL;
            }
            wire[used] = (unsigned char)len;
            memcpy(wire + used + 1, p, len);
            used += 1 + len;
            if (comma == NULL) {
                break;
            }
            p = comma + 1;
        }
        /* Returns 0 on success (unlike most of OpenSSL). */
        if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned int)used) != 0) {
            context_error(err, errlen, "setting ALPN", NULL);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    ERR_clear_error();
    return context_wrap(ctx, err, errlen);
}

int ct_context_set_versions(ct_context *c, int min_version, int max_version, char *err, size_t errlen) {
    if (c == NULL) {
        set_message(err, errlen, "no context");
        return -1;
    }
    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(c->ctx, min_version) != 1
        || SSL_CTX_set_max_proto_version(c->ctx, max_version) != 1) {
        context_error(err, errlen, "setting the TLS versions", NULL);
        return -1;
    }
    return 0;
}

void ct_context_free(ct_context *c) {
    if (c == NULL) {
        return;
    }
    SSL_CTX_free(c->ctx);
    OPENSSL_free(c);
}

/* ---- sessions -------------------------------------------------------------------------------- */

static BIO *new_mem_bio(void) {
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL) {
        /* An empty memory BIO means "retry later" (WANT_READ), not end of file. */
        BIO_set_mem_eof_return(b, -1);
    }
    return b;
}

/* Replaces the read (is_write 0) or write BIO when it is empty and its buffer is worth freeing
 * (CT_KEEP_BUFFER_MAX). Safe when empty: OpenSSL has taken every byte fed, or every byte it wrote
 * has been taken. Keeps the old one if a new one cannot be made. */
static void trim_bio(ct_session *s, int is_write) {
    BIO *b = is_write ? s->wbio : s->rbio;
    /* Only between handshakes: during one, OpenSSL may have its buffering BIO on the write side. */
    if (BIO_ctrl_pending(b) != 0 || !SSL_is_init_finished(s->ssl)) {
        return;
    }
    BUF_MEM *m = NULL;
    BIO_get_mem_ptr(b, &m);
    size_t capacity = m != NULL ? m->max : 0;
    int bit = is_write ? CT_TRIMMED_WRITE : CT_TRIMMED_READ;
    int first_after_handshake = s->established && (s->trimmed & bit) == 0;
    if (capacity == 0 || (capacity <= CT_KEEP_BUFFER_MAX && !first_after_handshake)) {
        if (first_after_handshake && capacity == 0) {
            s->trimmed |= bit;
        }
        return;
    }
    BIO *fresh = new_mem_bio();
    if (fresh == NULL) {
        ERR_clear_error();
        return;
    }
    if (is_write) {
        SSL_set0_wbio(s->ssl, fresh); /* frees the old one */
        s->wbio = fresh;
    } else {
        SSL_set0_rbio(s->ssl, fresh);
        s->rbio = fresh;
    }
    if (s->established) {
        s->trimmed |= bit;
    }
}

/* Notes when the first handshake finishes (for the failure category). And a server refuses a TLS 1.2
 * renegotiation by sending a no_renegotiation warning alert and going on; this callback sees that
 * alert leave, so the session can fail instead (CT_ERROR_RENEGOTIATION). */
static void info_callback(const SSL *ssl, int where, int value) {
    ct_session *s = SSL_get_app_data(ssl);
    if (s == NULL) {
        return;
    }
    if ((where & SSL_CB_HANDSHAKE_DONE) != 0) {
        s->established = 1;
    }
    if ((where & SSL_CB_ALERT) != 0 && (where & SSL_CB_WRITE) != 0 && SSL_is_server(ssl)
        && (value & 0xff) == SSL_AD_NO_RENEGOTIATION) {
        s->renegotiation_refused = 1;
    }
}

ct_session *ct_session_new(ct_context *c, int is_server) {
    if (c == NULL) {
        return NULL;
    }
    ERR_clear_error();
    ct_session *s = OPENSSL_zalloc(sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->ssl = SSL_new(c->ctx);
    s->rbio = new_mem_bio();
    s->wbio = new_mem_bio();
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
        SSL_free(s->ssl);
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        OPENSSL_free(s);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_bio(s->ssl, s->rbio, s->wbio); /* the SSL owns both from here */
    if (SSL_set_app_data(s->ssl, s) != 1) {
        SSL_free(s->ssl);
        OPENSSL_free(s);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_info_callback(s->ssl, info_callback);
    if (is_server) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
    }
    ERR_clear_error();
    return s;
}

void ct_session_free(ct_session *s) {
    if (s == NULL) {
        return;
    }
    SSL_free(s->ssl); /* frees both BIOs */
    OPENSSL_free(s);
    ERR_clear_error();
}

long ct_session_feed(ct_session *s, const void *ciphertext, size_t len) {
    if (len == 0) {
        return 0;
    }
    if (s->state != CT_STATE_OPEN) {
        /* Nothing will read it: a peer that goes on sending after close_notify or an alert does
         * not grow the buffer. */
        return (long)(len > LONG_MAX ? LONG_MAX : len);
    }
    ERR_clear_error();
    size_t written = 0;
    if (BIO_write_ex(s->rbio, ciphertext, len, &written) != 1) {
        ERR_clear_error();
        return written > 0 ? (long)written : -1;
    }
    return (long)written;
}

/* The result of a failed SSL_* call: 0 to wait for input, or the session's terminal state. */
static long session_result(ct_session *s, int ret) {
    int e = SSL_get_error(s->ssl, ret);
    if (s->renegotiation_refused) {
        session_fail(s, e);
        return CT_FATAL;
    }
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* memory BIOs never fill; kept for completeness */
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        s->state = CT_CLOSED;
        return CT_CLOSED;
    default:
        session_fail(s, e);
        return CT_FATAL;
    }
}

static long session_read(ct_session *s, void *plaintext, size_t cap);

long ct_session_read(ct_session *s, void *plaintext, size_t cap) {
    if (s->state != CT_STATE_OPEN) {
        return s->state;
    }
    long r = session_read(s, plaintext, cap);
    if (r == 0 && s->state == CT_STATE_OPEN) {
        trim_bio(s, 0);
    }
    return r;
}

static long session_read(ct_session *s, void *plaintext, size_t cap) {
    ERR_clear_error();
    if (!SSL_is_init_finished(s->ssl)) {
        int ret = SSL_do_handshake(s->ssl);
        if (ret != 1) {
            return session_result(s, ret);
        }
    }
    if (cap == 0) {
        return 0;
    }
    size_t got = 0;
    int ret = SSL_read_ex(s->ssl, plaintext, cap, &got);
    if (ret != 1) {
        return session_result(s, ret);
    }
    if (s->renegotiation_refused) { /* defensive: the alert went out while data came in */
        session_fail(s, SSL_ERROR_SSL);
        return CT_FATAL;
    }
    return (long)got;
}

long ct_session_write(ct_session *s, const void *plaintext, size_t len) {
    if (s->state == CT_FATAL) {
        return CT_FATAL;
    }
    if (s->shut) {
        return CT_CLOSED;
    }
    if (len == 0 || !SSL_is_init_finished(s->ssl)) {
        return 0;
    }
    ERR_clear_error();
    size_t written = 0;
    /* No SSL_MODE_ENABLE_PARTIAL_WRITE and a memory BIO that grows: all or nothing. */
    int ret = SSL_write_ex(s->ssl, plaintext, len, &written);
    if (ret != 1) {
        long r = session_result(s, ret);
        if (r == 0) {
            /* A renegotiation in progress wants input first; nothing was taken. */
            return 0;
        }
        return r;
    }
    return (long)written;
}

size_t ct_session_output_pending(ct_session *s) {
    return BIO_ctrl_pending(s->wbio);
}

long ct_session_take_output(ct_session *s, void *buf, size_t cap) {
    if (cap == 0 || BIO_ctrl_pending(s->wbio) == 0) {
        return 0;
    }
    ERR_clear_error();
    size_t got = 0;
    if (BIO_read_ex(s->wbio, buf, cap, &got) != 1) {
        ERR_clear_error();
        return 0;
    }
    trim_bio(s, 1);
    return (long)got;
}

int ct_session_input_pending(ct_session *s) {
    return SSL_has_pending(s->ssl) || BIO_ctrl_pending(s->rbio) > 0;
}

int ct_session_handshake_done(ct_session *s) {
    return SSL_is_init_finished(s->ssl) ? 1 : 0;
}

static long copy_out(const unsigned char *data, size_t len, char *buf, size_t cap) {
    if (len + 1 > cap) {
        return -1;
    }
    memcpy(buf, data, len);
    buf[len] = '\0';
    return (long)len;
}

long ct_session_alpn(ct_session *s, char *buf, size_t cap) {
    const unsigned char *data = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(s->ssl, &data, &len);
    if (data == NULL || len == 0) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    return copy_out(data, len, buf, cap);
}

const char *ct_session_version(ct_session *s) {
    return SSL_get_version(s->ssl);
}

const char *ct_session_error(ct_session *s) {
    return s->error;
}

int ct_session_error_category(ct_session *s) {
    return s->category;
}

void ct_session_shutdown(ct_session *s) {
    if (s->state == CT_FATAL || s->shut || !SSL_is_init_finished(s->ssl)) {
        return;
    }
    ERR_clear_error();
    /* 0: close_notify queued, the peer's not yet seen; 1: both done; < 0: failed (nothing to do). */
    (void)SSL_shutdown(s->ssl);
    s->shut = 1;
    ERR_clear_error();
}

long ct_session_peer_cert_subject(ct_session *s, char *buf, size_t cap) {
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (cap > 0) {
        buf[0] = '\0';
    }
    if (cert == NULL) {
        return 0;
    }
    X509_NAME *name = X509_get_subject_name(cert);
    if (name == NULL) {
        return 0;
    }
    ERR_clear_error();
    int len = X509_NAME_get_text_by_NID(name, NID_commonName, NULL, 0);
    if (len < 0) {
        ERR_clear_error();
        return 0;
    }
    if ((size_t)len + 1 > cap) {
        return -1;
    }
    if (X509_NAME_get_text_by_NID(name, NID_commonName, buf, (int)(cap > INT_MAX ? INT_MAX : cap)) != len) {
        ERR_clear_error();
        buf[0] = '\0';
        return 0;
    }
    return len;
}

int ct_session_test_renegotiate(ct_session *s) {
    ERR_clear_error();
    if (SSL_renegotiate(s->ssl) != 1) {
        ERR_clear_error();
        return 0;
    }
    /* Queues the ClientHello; the server's answer comes through ct_session_read. */
    int ret = SSL_do_handshake(s->ssl);
    if (ret != 1 && SSL_get_error(s->ssl, ret) != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return 0;
    }
    ERR_clear_error();
    return 1;
}

size_t ct_test_heap_in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks;
}
