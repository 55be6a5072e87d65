/*
 * CTLS — TLS as a sans-IO layer over OpenSSL memory BIOs, for TURN over TLS (RFC 8656 §3.1).
 *
 * The caller owns the I/O: it feeds the ciphertext it received (ct_session_feed), reads plaintext
 * (ct_session_read, which also drives the handshake), writes plaintext (ct_session_write) and takes
 * the ciphertext to send (ct_session_take_output: handshake records, application records, alerts).
 * Nothing here touches a socket or a clock. Idle sessions hold no record buffers: OpenSSL releases
 * its own (SSL_MODE_RELEASE_BUFFERS), and a drained memory BIO with a large buffer (or the handshake's)
 * is swapped for a fresh one.
 *
 * The only target that includes OpenSSL's headers and links libssl/libcrypto; this header names no
 * OpenSSL type. A context is shared read-only by all worker threads; a session is used by one
 * thread at a time. Every call clears the calling thread's OpenSSL error queue before and after, so
 * one session's error never shows up on another session of the same thread.
 */
#ifndef CTLS_H
#define CTLS_H

#include <stddef.h>

/* A configuration shared by sessions (an SSL_CTX, reference counted: sessions made from a context
 * keep working after ct_context_free). Opaque. */
typedef struct ct_context ct_context;

/* One TLS connection's state (an SSL with two memory BIOs). Opaque. */
typedef struct ct_session ct_session;

/* ct_session_read / ct_session_write results below zero. */
#define CT_CLOSED (-1) /* the peer sent close_notify: no more plaintext will come */
#define CT_FATAL (-2)  /* alert, protocol error or refused renegotiation: close the connection */

/* ct_session_error_category: why a session failed (CT_FATAL). */
enum {
    CT_ERROR_NONE = 0,
    CT_ERROR_HANDSHAKE = 1,     /* the handshake failed on our side (bad ClientHello, no shared cipher...) */
    CT_ERROR_ALERT = 2,         /* the peer sent a fatal alert */
    CT_ERROR_RENEGOTIATION = 3, /* a renegotiation was attempted (server: refused; client: refused by the peer) */
    CT_ERROR_OTHER = 4,         /* anything else after the handshake (bad record MAC, decode error...) */
};

/* Protocol versions, for ct_context_set_versions (the TLS wire values). */
#define CT_TLS1_2 0x0303
#define CT_TLS1_3 0x0304

/* The ALPN protocol of TURN over TLS (RFC 7443). */
#define CT_ALPN_STUN_TURN "stun.turn"

/* A server context: TLS 1.2 to 1.3, the PEM certificate chain (leaf first) and its private key,
 * which must match. No renegotiation, no compression, record buffers released while idle, no
 * server-side session cache (session tickets stay on: resumption needs no server state). ALPN:
 * "stun.turn" is selected when offered; a client offering only other protocols gets none (the
 * handshake goes on). On failure NULL, and a readable message in `err` (when errlen > 0). */
ct_context *ct_server_context_new(const char *cert_chain_pem_path, const char *key_pem_path, char *err, size_t errlen);

/* A client context for tests and the benchmark's load generator: TLS 1.2 to 1.3, the server's
 * certificate is NOT verified. Offers the ALPN protocols of `alpn_or_null` (comma-separated, in
 * order of preference: "stun.turn", "h2,stun.turn") when not NULL. */
ct_context *ct_client_context_new(const char *alpn_or_null, char *err, size_t errlen);

/* Restricts the protocol versions of sessions made from now on (CT_TLS1_2, CT_TLS1_3; 0 = the
 * library's lowest/highest). Returns 0, or -1 (message in `err`). */
int ct_context_set_versions(ct_context *ctx, int min_version, int max_version, char *err, size_t errlen);

/* Drops the caller's reference. Sessions made from it keep their own reference. NULL is fine. */
void ct_context_free(ct_context *ctx);

/* A new session in the server (is_server != 0) or client role. NULL when out of memory. */
ct_session *ct_session_new(ct_context *ctx, int is_server);

/* Frees the session and its buffers (no close_notify: see ct_session_shutdown). NULL is fine. */
void ct_session_free(ct_session *s);

/* Hands ciphertext received from the peer to the session. Returns the bytes accepted (all of them,
 * unless out of memory: then fewer, or -1). After CT_CLOSED or CT_FATAL the bytes are dropped (and
 * counted as accepted): nothing would read them. */
long ct_session_feed(ct_session *s, const void *ciphertext, size_t len);

/* Drives the handshake and decrypts: > 0 plaintext bytes written to `plaintext` (at most `cap`;
 * call again, more may be buffered), 0 = needs more input (or cap is 0), CT_CLOSED, CT_FATAL. After
 * each call, ciphertext may be waiting (ct_session_output_pending): handshake replies, session
 * tickets, alerts. Once CT_CLOSED or CT_FATAL, every later read returns the same. */
long ct_session_read(ct_session *s, void *plaintext, size_t cap);

/* Encrypts all `len` bytes into records (ct_session_take_output): returns len; 0 when the handshake
 * is not finished yet (nothing was taken: the caller queues) or len is 0; CT_CLOSED after
 * ct_session_shutdown; CT_FATAL after a failure. */
long ct_session_write(ct_session *s, const void *plaintext, size_t len);

/* Ciphertext bytes waiting to be sent. */
size_t ct_session_output_pending(ct_session *s);

/* Moves up to `cap` bytes of waiting ciphertext into `buf`; returns their number (0: none). */
long ct_session_take_output(ct_session *s, void *buf, size_t cap);

/* 1 when the handshake has finished, else 0. */
int ct_session_handshake_done(ct_session *s);
/* 1 when received ciphertext waits that has not made a whole record yet (bytes in the input BIO
 * or in OpenSSL's record buffer): a record begun and not finished. */
int ct_session_input_pending(ct_session *s);

/* The negotiated ALPN protocol copied into `buf` (NUL-terminated): its length, 0 when none was
 * negotiated, -1 when `cap` is too small. */
long ct_session_alpn(ct_session *s, char *buf, size_t cap);

/* The negotiated version ("TLSv1.3", "TLSv1.2"; before the handshake, the version in progress). A
 * static string. */
const char *ct_session_version(ct_session *s);

/* After CT_FATAL: OpenSSL's reason ("wrong version number", "sslv3 alert handshake failure",
 * "renegotiation refused"...), and its category (CT_ERROR_*). "" and CT_ERROR_NONE before. */
const char *ct_session_error(ct_session *s);
int ct_session_error_category(ct_session *s);

/* Queues close_notify (take it with ct_session_take_output). Later writes return CT_CLOSED. Does
 * nothing before the handshake has finished or after a failure. */
void ct_session_shutdown(ct_session *s);

/* The common name of the peer's certificate (a client session: the server's) copied into `buf`:
 * its length, 0 without a certificate or a CN, -1 when `cap` is too small. */
long ct_session_peer_cert_subject(ct_session *s, char *buf, size_t cap);

/* Tests only: a TLS 1.2 client session starts a renegotiation (SSL_renegotiate and its
 * ClientHello into the output). Returns 1, or 0 when OpenSSL refused (TLS 1.3, not finished). */
int ct_session_test_renegotiate(ct_session *s);

/* Tests only: the heap bytes in use (glibc's mallinfo2().uordblks, all arenas), to measure what an
 * idle session costs. */
size_t ct_test_heap_in_use(void);

#endif
