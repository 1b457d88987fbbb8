#ifndef REKEY_CCRYPTO_SHIM_H
#define REKEY_CCRYPTO_SHIM_H
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/opensslv.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/// OPENSSL_free is a macro; Swift sees this function instead.
static inline void rekey_openssl_free(void *pointer) { OPENSSL_free(pointer); }

/// The runtime OpenSSL version string, for logs.
static inline const char *rekey_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

/// BIO_get_mem_data is a macro: the bytes written to a memory BIO so far.
static inline long rekey_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }
#endif
