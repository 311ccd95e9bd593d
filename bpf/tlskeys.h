/* The ABI between bpf/tlskeys.bpf.c and Sources/Attach/TLSKeysLoader.swift (pinned by a size test).
 * One ring record per TLS secret that OpenSSL derives: the NSS key-log label as OpenSSL names it,
 * the session's client random, and the secret. A handful per handshake, never per record. */
#ifndef TLSTAP_TLSKEYS_H
#define TLSTAP_TLSKEYS_H

#include <linux/types.h>

#define TLSKEYS_LABEL_MAX 32   /* longest NSS label, CLIENT_HANDSHAKE_TRAFFIC_SECRET, is 31 + NUL */
#define TLSKEYS_RANDOM_LEN 32  /* SSL3_RANDOM_SIZE */
#define TLSKEYS_SECRET_MAX 64  /* EVP_MAX_MD_SIZE; TLS secrets are 32 or 48 bytes */

enum tlskeys_hook {
	/* nss_keylog_int(label, ssl, client_random, random_len, secret, secret_len): every argument
	 * in a register, no struct layout needed. */
	TLSKEYS_HOOK_NSS_KEYLOG = 1,
	/* ssl_log_secret(ssl, label, secret, secret_len) where nss_keylog_int was inlined into it: the
	 * client random is read from the SSL object where the attach cookie says (see tlskeys.bpf.c). */
	TLSKEYS_HOOK_LOG_SECRET = 2,
};

struct tlskeys_event {
	__u64 ts_ns;                             /* bpf_ktime_get_ns(): CLOCK_MONOTONIC, as capture_event */
	__u32 pid;                               /* thread-group id of the process that derived the secret */
	__u32 hook;                              /* enum tlskeys_hook */
	__u32 secret_len;                        /* valid bytes of secret, <= TLSKEYS_SECRET_MAX */
	__u32 read_errors;                       /* bit 0: label, 1: client random, 2: secret unreadable */
	char label[TLSKEYS_LABEL_MAX];           /* NUL-terminated NSS label, e.g. "CLIENT_RANDOM" */
	__u8 client_random[TLSKEYS_RANDOM_LEN];
	__u8 secret[TLSKEYS_SECRET_MAX];
};

#endif
