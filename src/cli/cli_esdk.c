/*
 * `coffer encrypt` / `coffer decrypt`: client-side envelope encryption of files, directories and
 * pipes in the AWS Encryption SDK message format, with the flags of aws-encryption-cli. This is
 * a client of libcoffer only (include/coffer/esdk.h): keyrings are built from -w specs, a
 * default (optionally caching) CMM drives the library's streaming encryptor/decryptor, and data
 * moves through one input and one output buffer so memory stays constant whatever the input size.
 *
 * Security decisions:
 *   - A named output that is a regular file (or does not exist yet) is written to a 0600
 *     temporary file beside it and renamed into place only after the message verified
 *     completely; on any failure the temporary file is removed, so unauthenticated plaintext is
 *     never left behind. The replaced file's mode (and owner, where allowed) carries over; a
 *     symlink is followed and the file it names replaced. Devices and FIFOs are written
 *     through, never replaced, and get the same release rules as stdout (--buffer spools).
 *   - Decrypt to stdout streams frames as their GCM tags verify (as aws-encryption-cli does),
 *     through an output buffer written when full or when the input pauses; on a failure what
 *     is still buffered is dropped, never written. With --buffer the plaintext is spooled to an
 *     unlinked temporary file and released only after the whole message (signature included)
 *     is authenticated.
 *   - Key files are read into wiped buffers; key bytes are never printed, only names.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "coffer/esdk.h"
#include "common/buf.h"
#include "common/codec.h"
#include "common/secret.h"

#define ESDK_CLI_IN_BUF (256u * 1024u)             /* read size: fits L2, so the engine reads it hot */
#define ESDK_CLI_MAX_KEY_FILE (64u * 1024u)        /* key files are small; refuse anything larger */
#define ESDK_CLI_PROGRESS_MIN (8u * 1024u * 1024u) /* progress bar only for inputs above this */
#define ESDK_CLI_PROGRESS_INTERVAL_NS (200u * 1000u * 1000u) /* redraw at most 5 times a second */
#define ESDK_CLI_MAX_KEYS 64                                 /* -w groups and key= entries */
#define ESDK_CLI_ENC_SUFFIX ".encrypted"
#define ESDK_CLI_DEC_SUFFIX ".decrypted"

enum esdk_mode { MODE_ENCRYPT, MODE_DECRYPT };

/* A run of argv entries following a multi-valued flag (-w, -c, --caching). Borrowed from argv. */
struct arg_span {
    char **v;
    size_t n;
};

struct esdk_opts {
    enum esdk_mode mode;
    const char *cmd; /* "coffer encrypt" / "coffer decrypt" for messages */
    const char *input, *output;
    bool recursive;
    const char *suffix;                      /* NULL = the mode's default */
    struct arg_span keys[ESDK_CLI_MAX_KEYS]; /* one per -w */
    size_t n_keys;
    struct arg_span ec[ESDK_CLI_MAX_KEYS]; /* every -c */
    size_t n_ec;
    struct arg_span caching; /* n == 0: no caching */
    bool buffer;
    bool policy_set;
    coffer_commitment_policy policy;
    size_t max_edks;
    uint32_t frame_length; /* 0 = library default */
    uint16_t suite;        /* 0 = library default */
    bool encode, decode;
    const char *metadata_output;
    bool suppress_metadata;
    int verbose;
    bool quiet;
};

/* ------------------------------------------------------------------------------------------
 * Algorithm suites by id and official name
 * ------------------------------------------------------------------------------------------ */

static const struct {
    uint16_t id;
    const char *name;
    bool committing;
} suites[] = {
    {0x0014, "AES_128_GCM_IV12_TAG16_NO_KDF", false},
    {0x0046, "AES_192_GCM_IV12_TAG16_NO_KDF", false},
    {0x0078, "AES_256_GCM_IV12_TAG16_NO_KDF", false},
    {0x0114, "AES_128_GCM_IV12_TAG16_HKDF_SHA256", false},
    {0x0146, "AES_192_GCM_IV12_TAG16_HKDF_SHA256", false},
    {0x0178, "AES_256_GCM_IV12_TAG16_HKDF_SHA256", false},
    {0x0214, "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256", false},
    {0x0346, "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", false},
    {0x0378, "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", false},
    {0x0478, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", true},
    {0x0578, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", true},
};
#define N_SUITES (sizeof(suites) / sizeof(suites[0]))

static int suite_index(uint16_t id)
{
    for (size_t i = 0; i < N_SUITES; i++) {
        if (suites[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

static const char *suite_name(uint16_t id)
{
    int i = suite_index(id);
    return i < 0 ? "unknown" : suites[i].name;
}

/* Accepts "0x0478", "0478", "478" (hex, as the spec writes ids) or the official name. */
static bool suite_parse(const char *s, uint16_t *out)
{
    for (size_t i = 0; i < N_SUITES; i++) {
        if (strcasecmp(s, suites[i].name) == 0) {
            *out = suites[i].id;
            return true;
        }
    }
    const char *h = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? s + 2 : s;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(h, &end, 16);
    if (*h == '\0' || *end != '\0' || errno != 0 || v > 0xffff || suite_index((uint16_t)v) < 0) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Usage
 * ------------------------------------------------------------------------------------------ */

static void esdk_usage(FILE *f, enum esdk_mode mode)
{
    const bool enc = mode == MODE_ENCRYPT;
    fprintf(f,
            "usage: coffer %s -i INPUT -o OUTPUT -w WRAPPING_KEY [-w ...] [options]\n\n"
            "%s in the AWS Encryption SDK message format (compatible with aws-encryption-cli).\n\n",
            enc ? "encrypt" : "decrypt",
            enc ? "Encrypts files, directories or stdin" : "Decrypts files, directories or stdin");
    fprintf(f,
            "  -i, --input PATH          file, directory (with -r) or - for stdin\n"
            "  -o, --output PATH         file, directory or - for stdout; a directory output gets\n"
            "                            the input's name plus the suffix\n"
            "  -r, --recursive           process every file under the input directory, keeping\n"
            "                            relative names\n"
            "      --suffix SUFFIX       output name suffix (default %s)\n",
            enc ? ESDK_CLI_ENC_SUFFIX : ESDK_CLI_DEC_SUFFIX);
    fprintf(f,
            "  -w, --wrapping-keys K=V ...   a keyring; repeat for a multi-keyring (the first is the\n"
            "                            generator). Forms:\n"
            "        provider=raw-aes key-file=FILE name=NAME namespace=NS   (FILE: 16/24/32 raw bytes)\n"
            "        provider=raw-rsa key-file=PEM name=NAME namespace=NS\n"
            "                         padding=pkcs1|oaep-sha1|oaep-sha256|oaep-sha384|oaep-sha512\n"
            "                         (%s)\n"
            "        provider=aws-kms key=ARN [key=ARN ...] [region=R] [endpoint=URL] [profile=P]\n"
            "                         [ca-bundle=FILE]%s\n",
            enc ? "a public or a private key" : "a private key",
            enc ? ""
                : "\n                         [discovery=true [discovery-partition=P]\n"
                  "                          [discovery-account=ID ...]]");
    fprintf(f, "  -c, --encryption-context K=V ...   %s\n",
            enc ? "encryption context pairs bound to the message"
                : "pairs that must be present in the message's context");
    if (enc) {
        fprintf(f,
                "      --algorithm SUITE     suite id (0x0478) or name (AES_256_GCM_HKDF_SHA512_COMMIT_KEY)\n"
                "      --frame-length N      plaintext bytes per frame (default 4096)\n");
    } else {
        fprintf(f, "      --buffer              release no plaintext until the whole message is\n"
                   "                            authenticated (named outputs always behave so)\n");
    }
    fprintf(f,
            "      --commitment-policy P forbid-encrypt-allow-decrypt | require-encrypt-allow-decrypt |\n"
            "                            require-encrypt-require-decrypt (default)\n"
            "      --max-encrypted-data-keys N   refuse messages with more than N data keys\n"
            "      --caching capacity=N max_age=S [max_messages_encrypted=N] [max_bytes_encrypted=N]\n"
            "      --%s              %s\n"
            "      --metadata-output FILE|-   one JSON line per message (header, keys used)\n"
            "  -S, --suppress-metadata   write no metadata (the default when no --metadata-output)\n"
            "  -v, --verbose             say what is done (repeat for more)\n"
            "  -q, --quiet               no warnings and no progress bar\n"
            "  -h, --help                this text\n\n"
            "exit status: 0 ok, 1 %s failed (bad message, no key could decrypt, context\n"
            "mismatch), 2 usage error (bad flags, missing file, bad key file). On failure the\n"
            "output file is removed.\n",
            enc ? "encode" : "decode",
            enc ? "  write the message base64-encoded" : "  read a base64-encoded message",
            enc ? "encryption" : "decryption");
}

/* ------------------------------------------------------------------------------------------
 * Command line parsing
 * ------------------------------------------------------------------------------------------ */

enum opt_id {
    OPT_INPUT,
    OPT_OUTPUT,
    OPT_RECURSIVE,
    OPT_SUFFIX,
    OPT_KEYS,
    OPT_EC,
    OPT_BUFFER,
    OPT_POLICY,
    OPT_MAX_EDKS,
    OPT_FRAME,
    OPT_ALGORITHM,
    OPT_CACHING,
    OPT_ENCODE,
    OPT_DECODE,
    OPT_METADATA,
    OPT_SUPPRESS,
    OPT_VERBOSE,
    OPT_QUIET,
};

#define ARITY_FLAG 0
#define ARITY_ONE 1
#define ARITY_MANY 2
#define FOR_ENC 1u
#define FOR_DEC 2u
#define FOR_BOTH 3u

static const struct opt_def {
    const char *lng; /* without the leading "--" */
    char shrt;       /* 0 = none */
    enum opt_id id;
    int arity;
    unsigned modes;
} opt_defs[] = {
    {"input", 'i', OPT_INPUT, ARITY_ONE, FOR_BOTH},
    {"output", 'o', OPT_OUTPUT, ARITY_ONE, FOR_BOTH},
    {"recursive", 'r', OPT_RECURSIVE, ARITY_FLAG, FOR_BOTH},
    {"suffix", 0, OPT_SUFFIX, ARITY_ONE, FOR_BOTH},
    {"wrapping-keys", 'w', OPT_KEYS, ARITY_MANY, FOR_BOTH},
    {"encryption-context", 'c', OPT_EC, ARITY_MANY, FOR_BOTH},
    {"buffer", 'b', OPT_BUFFER, ARITY_FLAG, FOR_DEC},
    {"commitment-policy", 0, OPT_POLICY, ARITY_ONE, FOR_BOTH},
    {"max-encrypted-data-keys", 0, OPT_MAX_EDKS, ARITY_ONE, FOR_BOTH},
    {"frame-length", 0, OPT_FRAME, ARITY_ONE, FOR_ENC},
    {"algorithm", 0, OPT_ALGORITHM, ARITY_ONE, FOR_ENC},
    {"caching", 0, OPT_CACHING, ARITY_MANY, FOR_BOTH},
    {"encode", 0, OPT_ENCODE, ARITY_FLAG, FOR_ENC},
    {"decode", 0, OPT_DECODE, ARITY_FLAG, FOR_DEC},
    {"metadata-output", 0, OPT_METADATA, ARITY_ONE, FOR_BOTH},
    {"suppress-metadata", 'S', OPT_SUPPRESS, ARITY_FLAG, FOR_BOTH},
    {"verbose", 'v', OPT_VERBOSE, ARITY_FLAG, FOR_BOTH},
    {"quiet", 'q', OPT_QUIET, ARITY_FLAG, FOR_BOTH},
};

static int usage_err(const struct esdk_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_err(const struct esdk_opts *o, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", o->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(`%s --help` for usage)\n", o->cmd);
    return CLI_EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9') {
        return false;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* The value of "key=value" when `kv` starts with "key=", else NULL. */
static const char *kv_value(const char *kv, const char *key)
{
    size_t n = strlen(key);
    return strncmp(kv, key, n) == 0 && kv[n] == '=' ? kv + n + 1 : NULL;
}

static const struct opt_def *opt_find(const char *a, const char **inline_val)
{
    *inline_val = NULL;
    if (a[0] == '-' && a[1] == '-') {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++) {
            if (strlen(opt_defs[i].lng) == n && strncmp(opt_defs[i].lng, name, n) == 0) {
                *inline_val = eq ? eq + 1 : NULL;
                return &opt_defs[i];
            }
        }
        return NULL;
    }
    if (a[0] == '-' && a[1] != '\0') {
        for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++) {
            if (opt_defs[i].shrt == a[1]) {
                *inline_val = a[2] != '\0' ? a + 2 : NULL;
                return &opt_defs[i];
            }
        }
    }
    return NULL;
}

static int opt_apply_one(struct esdk_opts *o, const struct opt_def *d, const char *v)
{
    uint64_t n = 0;
    switch (d->id) {
    case OPT_INPUT:
        o->input = v;
        break;
    case OPT_OUTPUT:
        o->output = v;
        break;
    case OPT_SUFFIX:
        o->suffix = v;
        break;
    case OPT_METADATA:
        o->metadata_output = v;
        break;
    case OPT_POLICY:
        if (strcmp(v, "forbid-encrypt-allow-decrypt") == 0) {
            o->policy = COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT;
        } else if (strcmp(v, "require-encrypt-allow-decrypt") == 0) {
            o->policy = COFFER_COMMIT_REQUIRE_ENCRYPT_ALLOW_DECRYPT;
        } else if (strcmp(v, "require-encrypt-require-decrypt") == 0) {
            o->policy = COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT;
        } else {
            return usage_err(o, "unknown commitment policy '%s'", v);
        }
        o->policy_set = true;
        break;
    case OPT_MAX_EDKS:
        if (!parse_u64(v, SIZE_MAX, &n) || n == 0) {
            return usage_err(o, "--max-encrypted-data-keys needs a positive integer, not '%s'", v);
        }
        o->max_edks = (size_t)n;
        break;
    case OPT_FRAME:
        if (!parse_u64(v, UINT32_MAX, &n) || n == 0) {
            return usage_err(o, "--frame-length needs an integer in 1..4294967295, not '%s'", v);
        }
        o->frame_length = (uint32_t)n;
        break;
    case OPT_ALGORITHM:
        if (!suite_parse(v, &o->suite)) {
            return usage_err(o, "unknown algorithm suite '%s'", v);
        }
        break;
    default:
        break;
    }
    return CLI_EXIT_OK;
}

static int opt_apply(struct esdk_opts *o, const struct opt_def *d, struct arg_span span)
{
    struct arg_span *slot = NULL;
    switch (d->id) {
    case OPT_KEYS:
    case OPT_EC:
        if ((d->id == OPT_KEYS ? o->n_keys : o->n_ec) >= ESDK_CLI_MAX_KEYS) {
            return usage_err(o, "too many %s flags", d->id == OPT_KEYS ? "-w" : "-c");
        }
        slot = d->id == OPT_KEYS ? &o->keys[o->n_keys++] : &o->ec[o->n_ec++];
        *slot = span;
        return CLI_EXIT_OK;
    case OPT_CACHING:
        o->caching = span;
        return CLI_EXIT_OK;
    case OPT_RECURSIVE:
        o->recursive = true;
        return CLI_EXIT_OK;
    case OPT_BUFFER:
        o->buffer = true;
        return CLI_EXIT_OK;
    case OPT_ENCODE:
        o->encode = true;
        return CLI_EXIT_OK;
    case OPT_DECODE:
        o->decode = true;
        return CLI_EXIT_OK;
    case OPT_SUPPRESS:
        o->suppress_metadata = true;
        return CLI_EXIT_OK;
    case OPT_VERBOSE:
        o->verbose++;
        return CLI_EXIT_OK;
    case OPT_QUIET:
        o->quiet = true;
        return CLI_EXIT_OK;
    default:
        return opt_apply_one(o, d, span.v[0]);
    }
}

/* -vv, -vvv: counted verbosity. */
static bool is_multi_v(const char *a)
{
    if (a[0] != '-' || a[1] != 'v' || a[2] == '\0') {
        return false;
    }
    for (const char *p = a + 1; *p; p++) {
        if (*p != 'v') {
            return false;
        }
    }
    return true;
}

static int opts_check(struct esdk_opts *o);

/* Returns CLI_EXIT_OK, CLI_EXIT_USAGE, or -1 when help was printed. */
static int opts_parse(struct esdk_opts *o, int argc, char **argv)
{
    unsigned mode_bit = o->mode == MODE_ENCRYPT ? FOR_ENC : FOR_DEC;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            esdk_usage(stdout, o->mode);
            return -1;
        }
        if (is_multi_v(a)) {
            o->verbose += (int)strlen(a) - 1;
            continue;
        }
        const char *inline_val = NULL;
        const struct opt_def *d = opt_find(a, &inline_val);
        if (d == NULL || (d->modes & mode_bit) == 0) {
            return usage_err(o, "unknown option '%s'", a);
        }
        struct arg_span span = {NULL, 0};
        if (d->arity == ARITY_FLAG) {
            if (inline_val != NULL) {
                return usage_err(o, "option '%s' takes no value", a);
            }
        } else if (d->arity == ARITY_ONE) {
            if (inline_val != NULL) {
                span.v = (char **)&inline_val;
                span.n = 1;
            } else if (i + 1 < argc) {
                span.v = &argv[++i];
                span.n = 1;
            } else {
                return usage_err(o, "option '%s' needs a value", a);
            }
        } else {
            if (inline_val != NULL) {
                return usage_err(o, "option '%s' takes space-separated key=value arguments", a);
            }
            span.v = &argv[i + 1];
            while (i + 1 < argc && argv[i + 1][0] != '-' && strchr(argv[i + 1], '=') != NULL) {
                i++;
                span.n++;
            }
            if (span.n == 0) {
                return usage_err(o, "option '%s' needs key=value arguments", a);
            }
        }
        int rc = opt_apply(o, d, span);
        if (rc != CLI_EXIT_OK) {
            return rc;
        }
    }
    return opts_check(o);
}

static int opts_check(struct esdk_opts *o)
{
    if (o->input == NULL || o->output == NULL) {
        return usage_err(o, "%s", "-i/--input and -o/--output are required");
    }
    if (o->n_keys == 0) {
        return usage_err(o, "%s", "at least one -w/--wrapping-keys is required");
    }
    if (o->metadata_output != NULL && o->suppress_metadata) {
        return usage_err(o, "%s", "--metadata-output and --suppress-metadata exclude each other");
    }
    if (o->metadata_output != NULL && strcmp(o->metadata_output, "-") == 0 && strcmp(o->output, "-") == 0) {
        return usage_err(o, "%s", "metadata and data cannot both go to stdout");
    }
    if (o->suffix != NULL && (o->suffix[0] == '\0' || strchr(o->suffix, '/') != NULL)) {
        return usage_err(o, "bad --suffix '%s'", o->suffix);
    }
    if (o->suite != 0) {
        bool committing = suites[suite_index(o->suite)].committing;
        if (committing && o->policy == COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT) {
            return usage_err(o, "suite %s commits to its key, which the policy forbids",
                             suite_name(o->suite));
        }
        if (!committing && o->policy != COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT) {
            return usage_err(o,
                             "suite %s does not commit to its key; encrypting with it needs "
                             "--commitment-policy forbid-encrypt-allow-decrypt",
                             suite_name(o->suite));
        }
    }
    for (size_t i = 0; i < o->n_ec; i++) {
        for (size_t j = 0; j < o->ec[i].n; j++) {
            const char *kv = o->ec[i].v[j];
            if (kv[0] == '=') {
                return usage_err(o, "encryption context pair '%s' has an empty key", kv);
            }
            if (o->mode == MODE_ENCRYPT && strncmp(kv, "aws-crypto-", 11) == 0) {
                return usage_err(o, "encryption context key '%s' is reserved (aws-crypto- prefix)", kv);
            }
        }
    }
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------
 * Keyrings from -w specs
 * ------------------------------------------------------------------------------------------ */

/* What one -w built, for messages and metadata (never key bytes). */
struct key_info {
    char provider[16];    /* raw-aes, raw-rsa, aws-kms */
    const char *name_ns;  /* namespace (raw) */
    const char *name;     /* key name (raw) */
    struct arg_span spec; /* the -w arguments (aws-kms: the key= entries are listed) */
    bool used;            /* wrapped (encrypt) or unwrapped (decrypt) a data key */
};

/* Wraps a keyring to learn which -w actually unwrapped the data key. */
struct rec_keyring {
    coffer_keyring base;
    coffer_keyring *inner;
    struct key_info *info;
};

static int rec_on_encrypt(coffer_keyring *kr, coffer_enc_materials *m)
{
    struct rec_keyring *r = (struct rec_keyring *)kr;
    int rc = coffer_keyring_on_encrypt(r->inner, m);
    if (rc == 0) {
        r->info->used = true;
    }
    return rc;
}

static int rec_on_decrypt(coffer_keyring *kr, coffer_dec_materials *m, const coffer_edk *edks, size_t n)
{
    struct rec_keyring *r = (struct rec_keyring *)kr;
    bool had = coffer_dec_materials_has_data_key(m);
    int rc = coffer_keyring_on_decrypt(r->inner, m, edks, n);
    if (rc == 0 && !had && coffer_dec_materials_has_data_key(m)) {
        r->info->used = true;
    }
    return rc;
}

static void rec_destroy(coffer_keyring *kr)
{
    struct rec_keyring *r = (struct rec_keyring *)kr;
    coffer_keyring_release(r->inner);
    free(r);
}

static const struct coffer_keyring_vt rec_vt = {sizeof(struct coffer_keyring_vt), "cli-recording",
                                                rec_on_encrypt, rec_on_decrypt, rec_destroy};

/* Takes ownership of `inner`. */
static coffer_keyring *rec_keyring_new(coffer_keyring *inner, struct key_info *info)
{
    struct rec_keyring *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        coffer_keyring_release(inner);
        return NULL;
    }
    coffer_keyring_base_init(&r->base, &rec_vt);
    r->inner = inner;
    r->info = info;
    return &r->base;
}

/* Reads a whole (small) key file into a wiped secret buffer, NUL-terminated. */
static int key_file_read(const struct esdk_opts *o, const char *path, coffer_buf *out)
{
    int rc = CLI_EXIT_USAGE;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return usage_err(o, "cannot open key file '%s'", path);
    }
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > ESDK_CLI_MAX_KEY_FILE) {
            usage_err(o, "key file '%s' is too large", path);
            goto out;
        }
        if (coffer_buf_append(out, chunk, n) != COFFER_OK) {
            goto out;
        }
    }
    if (ferror(f)) {
        usage_err(o, "cannot read key file '%s'", path);
        goto out;
    }
    if (coffer_buf_nul_terminate(out) != COFFER_OK) {
        goto out;
    }
    rc = CLI_EXIT_OK;
out:
    coffer_secure_zero(chunk, sizeof(chunk));
    fclose(f);
    return rc;
}

struct raw_spec {
    const char *key_file, *name, *ns, *padding;
};

static int raw_spec_parse(const struct esdk_opts *o, struct arg_span s, struct raw_spec *r)
{
    for (size_t i = 1; i < s.n; i++) {
        const char *kv = s.v[i], *v;
        if ((v = kv_value(kv, "key-file")) != NULL) {
            r->key_file = v;
        } else if ((v = kv_value(kv, "name")) != NULL) {
            r->name = v;
        } else if ((v = kv_value(kv, "namespace")) != NULL) {
            r->ns = v;
        } else if ((v = kv_value(kv, "padding")) != NULL) {
            r->padding = v;
        } else {
            return usage_err(o, "unknown wrapping key attribute '%s'", kv);
        }
    }
    if (r->key_file == NULL || r->name == NULL || r->ns == NULL || r->name[0] == '\0' || r->ns[0] == '\0') {
        return usage_err(o, "%s", "raw keys need key-file=, name= and namespace=");
    }
    return CLI_EXIT_OK;
}

static int keyring_raw_aes(const struct esdk_opts *o, struct arg_span s, coffer_keyring **out)
{
    struct raw_spec r = {0};
    coffer_buf key = COFFER_SECRET_BUF_INIT;
    int rc = raw_spec_parse(o, s, &r);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (r.padding != NULL) {
        return usage_err(o, "%s", "padding= applies to raw-rsa only");
    }
    rc = key_file_read(o, r.key_file, &key);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    if (key.len != 16 && key.len != 24 && key.len != 32) {
        rc = usage_err(o, "raw AES key file '%s' must hold exactly 16, 24 or 32 bytes", r.key_file);
        goto out;
    }
    *out = coffer_keyring_raw_aes_new(r.ns, r.name, key.data, key.len);
    rc = *out ? CLI_EXIT_OK : usage_err(o, "cannot build a raw AES keyring from '%s'", r.key_file);
out:
    coffer_buf_free(&key);
    return rc;
}

static int keyring_raw_rsa(const struct esdk_opts *o, struct arg_span s, coffer_keyring **out)
{
    static const struct {
        const char *name;
        coffer_rsa_padding p;
    } paddings[] = {{"pkcs1", COFFER_RSA_PKCS1},
                    {"oaep-sha1", COFFER_RSA_OAEP_SHA1_MGF1},
                    {"oaep-sha256", COFFER_RSA_OAEP_SHA256_MGF1},
                    {"oaep-sha384", COFFER_RSA_OAEP_SHA384_MGF1},
                    {"oaep-sha512", COFFER_RSA_OAEP_SHA512_MGF1}};
    struct raw_spec r = {0};
    coffer_buf pem = COFFER_SECRET_BUF_INIT;
    int rc = raw_spec_parse(o, s, &r);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (r.padding == NULL) {
        return usage_err(o, "%s",
                         "raw-rsa needs padding=pkcs1|oaep-sha1|oaep-sha256|oaep-sha384|oaep-sha512");
    }
    int pi = -1;
    for (size_t i = 0; i < sizeof(paddings) / sizeof(paddings[0]); i++) {
        if (strcasecmp(r.padding, paddings[i].name) == 0) {
            pi = (int)i;
        }
    }
    if (pi < 0) {
        return usage_err(o, "unknown RSA padding '%s'", r.padding);
    }
    rc = key_file_read(o, r.key_file, &pem);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    const char *text = (const char *)pem.data;
    bool priv = strstr(text, "PRIVATE KEY-----") != NULL;
    bool pub = !priv && strstr(text, "PUBLIC KEY-----") != NULL;
    if (!priv && !pub) {
        rc = usage_err(o, "'%s' holds no PEM RSA key", r.key_file);
        goto out;
    }
    if (o->mode == MODE_DECRYPT && !priv) {
        rc = usage_err(o, "decrypting needs a private key; '%s' holds a public key", r.key_file);
        goto out;
    }
    *out = coffer_keyring_raw_rsa_new(r.ns, r.name, pub ? text : NULL, priv ? text : NULL, paddings[pi].p);
    rc = *out ? CLI_EXIT_OK : usage_err(o, "cannot load the RSA key in '%s'", r.key_file);
out:
    coffer_buf_free(&pem);
    return rc;
}

#ifdef COFFER_HAVE_KMS_KEYRING
static int keyring_aws_kms(const struct esdk_opts *o, struct arg_span s, coffer_keyring **out)
{
    const char *ids[ESDK_CLI_MAX_KEYS], *accounts[ESDK_CLI_MAX_KEYS];
    struct coffer_kms_keyring_options ko;
    memset(&ko, 0, sizeof(ko));
    size_t n_ids = 0, n_acc = 0;
    for (size_t i = 1; i < s.n; i++) {
        const char *kv = s.v[i], *v;
        if ((v = kv_value(kv, "key")) != NULL) {
            if (n_ids >= ESDK_CLI_MAX_KEYS || v[0] == '\0') {
                return usage_err(o, "bad or too many key= entries ('%s')", kv);
            }
            ids[n_ids++] = v;
        } else if ((v = kv_value(kv, "discovery-account")) != NULL) {
            if (n_acc >= ESDK_CLI_MAX_KEYS || v[0] == '\0') {
                return usage_err(o, "bad or too many discovery-account= entries ('%s')", kv);
            }
            accounts[n_acc++] = v;
        } else if ((v = kv_value(kv, "discovery")) != NULL) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
                return usage_err(o, "discovery= takes true or false, not '%s'", v);
            }
            ko.discovery = strcmp(v, "true") == 0;
        } else if ((v = kv_value(kv, "discovery-partition")) != NULL) {
            ko.discovery_partition = v;
        } else if ((v = kv_value(kv, "region")) != NULL) {
            ko.region = v;
        } else if ((v = kv_value(kv, "endpoint")) != NULL) {
            ko.endpoint = v;
        } else if ((v = kv_value(kv, "profile")) != NULL) {
            ko.profile = v;
        } else if ((v = kv_value(kv, "ca-bundle")) != NULL) {
            ko.ca_bundle = v;
        } else {
            return usage_err(o, "unknown aws-kms attribute '%s'", kv);
        }
    }
    if (ko.discovery && o->mode == MODE_ENCRYPT) {
        return usage_err(o, "%s", "discovery=true is for decrypt only; encrypting needs key=ARN");
    }
    if (!ko.discovery && (n_acc > 0 || ko.discovery_partition != NULL)) {
        return usage_err(o, "%s", "discovery-account=/discovery-partition= need discovery=true");
    }
    if ((n_acc > 0) != (ko.discovery_partition != NULL)) {
        return usage_err(o, "%s", "discovery-account= and discovery-partition= go together");
    }
    if (n_ids == 0 && !ko.discovery) {
        return usage_err(o, "%s", "aws-kms needs key=ARN (or discovery=true on decrypt)");
    }
    ko.key_ids = n_ids ? ids : NULL;
    ko.n_key_ids = n_ids;
    ko.discovery_accounts = n_acc ? accounts : NULL;
    ko.n_discovery_accounts = n_acc;
    *out = coffer_keyring_kms_new(&ko);
    if (*out == NULL) {
        return usage_err(o, "cannot build the aws-kms keyring: %s",
                         coffer_status_message(COFFER_STATUS_USAGE));
    }
    return CLI_EXIT_OK;
}
#else
static int keyring_aws_kms(const struct esdk_opts *o, struct arg_span s, coffer_keyring **out)
{
    (void)s;
    (void)out;
    return usage_err(o, "%s", "aws-kms keyring not available in this build");
}
#endif

/* Builds one keyring per -w (each wrapped in a recorder) and a multi-keyring over several. */
static int keyring_build(const struct esdk_opts *o, struct key_info *infos, coffer_keyring **out)
{
    coffer_keyring *krs[ESDK_CLI_MAX_KEYS] = {0};
    size_t n = 0;
    int rc = CLI_EXIT_USAGE;
    for (size_t i = 0; i < o->n_keys; i++) {
        struct arg_span s = o->keys[i];
        const char *provider = kv_value(s.v[0], "provider");
        coffer_keyring *kr = NULL;
        if (provider == NULL) {
            rc = usage_err(o, "a wrapping key starts with provider=, not '%s'", s.v[0]);
            goto out;
        }
        infos[i].spec = s;
        snprintf(infos[i].provider, sizeof(infos[i].provider), "%s", provider);
        if (strcmp(provider, "raw-aes") == 0) {
            rc = keyring_raw_aes(o, s, &kr);
        } else if (strcmp(provider, "raw-rsa") == 0) {
            rc = keyring_raw_rsa(o, s, &kr);
        } else if (strcmp(provider, "aws-kms") == 0) {
            rc = keyring_aws_kms(o, s, &kr);
        } else {
            rc = usage_err(o, "unknown key provider '%s' (raw-aes, raw-rsa, aws-kms)", provider);
        }
        if (rc != CLI_EXIT_OK) {
            goto out;
        }
        for (size_t j = 1; j < s.n; j++) {
            const char *v;
            if ((v = kv_value(s.v[j], "name")) != NULL) {
                infos[i].name = v;
            } else if ((v = kv_value(s.v[j], "namespace")) != NULL) {
                infos[i].name_ns = v;
            }
        }
        krs[n] = rec_keyring_new(kr, &infos[i]);
        if (krs[n] == NULL) {
            rc = CLI_EXIT_FAILED;
            goto out;
        }
        n++;
    }
    if (n == 1) {
        *out = krs[0];
        krs[0] = NULL;
    } else {
        *out = coffer_keyring_multi_new(krs[0], krs + 1, n - 1);
        if (*out == NULL) {
            rc = CLI_EXIT_FAILED;
            goto out;
        }
    }
    rc = CLI_EXIT_OK;
out:
    for (size_t i = 0; i < n; i++) {
        coffer_keyring_release(krs[i]);
    }
    return rc;
}

static int cmm_build(const struct esdk_opts *o, coffer_keyring *kr, coffer_cmm **out)
{
    coffer_cmm *base = coffer_cmm_default_new(kr);
    if (base == NULL) {
        return CLI_EXIT_FAILED;
    }
    if (o->caching.n == 0) {
        *out = base;
        return CLI_EXIT_OK;
    }
    uint64_t capacity = 0, max_age = 0, max_msgs = UINT64_MAX, max_bytes = UINT64_MAX;
    bool have_cap = false, have_age = false;
    for (size_t i = 0; i < o->caching.n; i++) {
        const char *kv = o->caching.v[i], *v;
        bool ok;
        if ((v = kv_value(kv, "capacity")) != NULL) {
            ok = have_cap = parse_u64(v, SIZE_MAX, &capacity) && capacity > 0;
        } else if ((v = kv_value(kv, "max_age")) != NULL) {
            ok = have_age = parse_u64(v, UINT64_MAX, &max_age) && max_age > 0;
        } else if ((v = kv_value(kv, "max_messages_encrypted")) != NULL) {
            ok = parse_u64(v, UINT64_MAX, &max_msgs) && max_msgs > 0;
        } else if ((v = kv_value(kv, "max_bytes_encrypted")) != NULL) {
            ok = parse_u64(v, UINT64_MAX, &max_bytes);
        } else {
            ok = false;
        }
        if (!ok) {
            coffer_cmm_release(base);
            return usage_err(o, "bad --caching argument '%s'", kv);
        }
    }
    if (!have_cap || !have_age) {
        coffer_cmm_release(base);
        return usage_err(o, "%s", "--caching needs capacity=N and max_age=SECONDS");
    }
    *out = coffer_cmm_caching_new(base, (size_t)capacity, max_age, max_bytes, max_msgs);
    coffer_cmm_release(base);
    return *out ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int ec_build(const struct esdk_opts *o, coffer_ec **out)
{
    coffer_ec *ec = coffer_ec_new();
    if (ec == NULL) {
        return CLI_EXIT_FAILED;
    }
    for (size_t i = 0; i < o->n_ec; i++) {
        for (size_t j = 0; j < o->ec[i].n; j++) {
            const char *kv = o->ec[i].v[j];
            const char *eq = strchr(kv, '=');
            if (coffer_ec_set(ec, (const uint8_t *)kv, (size_t)(eq - kv), (const uint8_t *)eq + 1,
                              strlen(eq + 1)) != 0) {
                coffer_ec_free(ec);
                return usage_err(o, "bad encryption context pair '%s'", kv);
            }
        }
    }
    *out = ec;
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------
 * Output: temporary file renamed into place, written directly, or a spool for --buffer
 *
 * Only a regular file (or a name that does not exist yet) goes through the temporary file and
 * the rename: renaming onto a device, a FIFO or a symlink would replace it with a regular file
 * (as root, `-o /dev/null` would replace /dev/null). Those are written through directly, as
 * every Unix tool does; a symlink is followed to the file it names, which is then replaced in
 * its own directory while the link stays.
 * ------------------------------------------------------------------------------------------ */

#define ESDK_CLI_MAX_LINKS 40 /* symlink hops followed before ELOOP, as the kernel allows */

/* Output goes through one buffer of ours, written with write(2)/writev(2) on the descriptor:
 * stdio would copy every byte once more and, on a pipe or /dev/null, write in st_blksize (4 KiB)
 * pieces. Small pieces (a 4 KiB frame) are gathered into the buffer; a large one goes out with
 * whatever is buffered in one writev, without being copied. */
#define ESDK_CLI_OUT_BUF (1024u * 1024u)
#define ESDK_CLI_OUT_DIRECT (ESDK_CLI_OUT_BUF / 16u) /* pieces at least this long are not copied */

struct out_target {
    char *dest;       /* the file renamed onto, symlinks resolved (owned); NULL when direct */
    char *tmp_path;   /* the temporary file beside dest (owned) */
    int fd;           /* where bytes go now: direct_fd, the temporary file or the spool; -1 = none */
    int direct_fd;    /* stdout, or a device/FIFO opened for writing; -1 for a renamed file */
    bool spool;       /* fd is an unlinked temp file copied to direct_fd on success */
    bool keep_attrs;  /* dest existed: carry its mode and owner over to the new file */
    struct stat orig; /* dest as it was, when keep_attrs */
    uint8_t *buf;     /* bytes not yet written (locked, wiped at release: plaintext on decrypt) */
    size_t len;
};

static void out_init(struct out_target *t)
{
    memset(t, 0, sizeof(*t));
    t->fd = -1;
    t->direct_fd = -1;
}

/* Writes every byte of iov (modified) to fd, through short writes and EINTR. */
static int fd_writev_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Writes what is buffered and then n bytes at p (which may be NULL when n == 0). */
static int out_flush_with(struct out_target *t, const uint8_t *p, size_t n)
{
    struct iovec iov[2] = {{t->buf, t->len}, {(void *)p, n}};
    int first = t->len > 0 ? 0 : 1;
    t->len = 0;
    return fd_writev_all(t->fd, iov + first, 2 - first - (n == 0 ? 1 : 0));
}

static int out_write(struct out_target *t, const uint8_t *p, size_t n)
{
    if (n < ESDK_CLI_OUT_DIRECT && n <= ESDK_CLI_OUT_BUF - t->len) {
        memcpy(t->buf + t->len, p, n);
        t->len += n;
        return t->len == ESDK_CLI_OUT_BUF ? out_flush_with(t, NULL, 0) : 0;
    }
    return out_flush_with(t, p, n);
}

/* Follows `path` through symlinks to the name that is not one. On success *resolved (owned)
 * is that name and *exists tells whether it exists (then *st describes it, not following). */
static int out_resolve(const char *path, char **resolved, struct stat *st, bool *exists)
{
    char *cur = strdup(path);
    if (cur == NULL) {
        return -1;
    }
    for (int hop = 0; hop <= ESDK_CLI_MAX_LINKS; hop++) {
        if (lstat(cur, st) != 0) {
            if (errno != ENOENT) {
                free(cur);
                return -1;
            }
            *exists = false;
            *resolved = cur;
            return 0;
        }
        if (!S_ISLNK(st->st_mode)) {
            *exists = true;
            *resolved = cur;
            return 0;
        }
        char target[PATH_MAX];
        ssize_t n = readlink(cur, target, sizeof(target) - 1);
        if (n < 0 || (size_t)n >= sizeof(target) - 1) {
            errno = n < 0 ? errno : ENAMETOOLONG;
            free(cur);
            return -1;
        }
        target[n] = '\0';
        /* A relative target is relative to the directory holding the link. */
        const char *slash = strrchr(cur, '/');
        int dlen = target[0] != '/' && slash != NULL ? (int)(slash - cur + 1) : 0;
        char *next = NULL;
        if (asprintf(&next, "%.*s%s", dlen, cur, target) < 0) {
            free(cur);
            return -1;
        }
        free(cur);
        cur = next;
    }
    free(cur);
    errno = ELOOP;
    return -1;
}

/* Opens a device, FIFO or socket path for writing as it is: never created, never replaced. */
static int out_open_direct(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        /* swapped for a regular file since we looked: writing in place would not be atomic */
        close(fd);
        errno = EEXIST;
        return -1;
    }
    return fd;
}

/* An unlinked temporary file for the --buffer spool (0600, gone when closed). */
static int out_open_spool(void)
{
    const char *dir = getenv("TMPDIR");
    char *path = NULL;
    if (asprintf(&path, "%s/coffer-spool-XXXXXX", dir != NULL && dir[0] != '\0' ? dir : "/tmp") < 0) {
        return -1;
    }
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path);
    }
    free(path);
    return fd;
}

static int out_open(struct out_target *t, const char *path, bool spool_stdout)
{
    out_init(t);
    t->buf = coffer_secret_alloc(ESDK_CLI_OUT_BUF);
    if (t->buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (strcmp(path, "-") == 0) {
        fflush(stdout); /* nothing of ours goes through stdio's stdout buffer, but keep the order */
        t->direct_fd = STDOUT_FILENO;
    } else {
        struct stat st;
        bool exists = false;
        char *dest = NULL;
        if (out_resolve(path, &dest, &st, &exists) != 0) {
            return -1;
        }
        if (exists && S_ISDIR(st.st_mode)) {
            free(dest);
            errno = EISDIR;
            return -1;
        }
        if (exists && !S_ISREG(st.st_mode)) {
            t->direct_fd = out_open_direct(dest);
            free(dest);
            if (t->direct_fd < 0) {
                return -1;
            }
        } else {
            t->dest = dest;
            t->keep_attrs = exists;
            t->orig = st;
        }
    }
    if (t->direct_fd >= 0) {
        /* Bytes go out as they come, unless --buffer holds them until the message verified. */
        t->spool = spool_stdout;
        t->fd = spool_stdout ? out_open_spool() : t->direct_fd;
        return t->fd >= 0 ? 0 : -1;
    }
    const char *slash = strrchr(t->dest, '/');
    int dlen = slash ? (int)(slash - t->dest + 1) : 0;
    if (asprintf(&t->tmp_path, "%.*s.%s.coffer-XXXXXX", dlen, t->dest, slash ? slash + 1 : t->dest) < 0) {
        t->tmp_path = NULL;
        return -1;
    }
    t->fd = mkostemp(t->tmp_path, O_CLOEXEC); /* 0600: plaintext must not be readable by others meanwhile */
    if (t->fd < 0) {
        free(t->tmp_path);
        t->tmp_path = NULL;
        return -1;
    }
    return 0; /* on failure the caller's out_abort cleans up */
}

/* Closes a direct destination (never stdout). */
static int out_close_direct(struct out_target *t)
{
    int rc = 0;
    if (t->direct_fd >= 0 && t->direct_fd != STDOUT_FILENO && close(t->direct_fd) != 0) {
        rc = -1;
    }
    if (t->fd == t->direct_fd) {
        t->fd = -1;
    }
    t->direct_fd = -1;
    return rc;
}

/* The new file takes over the replaced file's owner (where we may) and mode. Set-id bits are
 * not carried over: they make no sense on a message or its plaintext. */
static int out_keep_attrs(struct out_target *t)
{
    if (fchown(t->fd, t->orig.st_uid, t->orig.st_gid) != 0 && errno != EPERM) {
        return -1;
    }
    return fchmod(t->fd, t->orig.st_mode & (S_IRWXU | S_IRWXG | S_IRWXO | S_ISVTX));
}

/* Copies the verified spool to its destination through the output buffer (emptied first). */
static int out_copy_spool(struct out_target *t)
{
    if (lseek(t->fd, 0, SEEK_SET) != 0) {
        return -1;
    }
    for (;;) {
        ssize_t n = read(t->fd, t->buf, ESDK_CLI_OUT_BUF);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n == 0 ? 0 : -1;
        }
        struct iovec iov = {t->buf, (size_t)n};
        if (fd_writev_all(t->direct_fd, &iov, 1) != 0) {
            return -1;
        }
    }
}

static int out_commit_files(struct out_target *t)
{
    int rc = out_flush_with(t, NULL, 0);
    if (t->spool) {
        if (rc == 0) {
            rc = out_copy_spool(t);
        }
        close(t->fd);
        t->fd = -1;
        return out_close_direct(t) == 0 ? rc : -1;
    }
    if (t->direct_fd >= 0) {
        return out_close_direct(t) == 0 ? rc : -1;
    }
    if (rc == 0 && fsync(t->fd) != 0) {
        rc = -1;
    }
    if (rc == 0 && t->keep_attrs && out_keep_attrs(t) != 0) {
        rc = -1;
    }
    if (close(t->fd) != 0) {
        rc = -1;
    }
    t->fd = -1;
    if (rc == 0 && rename(t->tmp_path, t->dest) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        unlink(t->tmp_path);
    }
    free(t->tmp_path);
    t->tmp_path = NULL;
    free(t->dest);
    t->dest = NULL;
    return rc;
}

static void out_release_buf(struct out_target *t)
{
    coffer_secret_free(t->buf, ESDK_CLI_OUT_BUF);
    t->buf = NULL;
    t->len = 0;
}

/* Makes the output visible: rename into place, or copy the spool to its destination. */
static int out_commit(struct out_target *t)
{
    int rc = out_commit_files(t);
    out_release_buf(t);
    return rc;
}

/* Drops everything written (never leaves partial output behind). Safe after commit. */
static void out_abort(struct out_target *t)
{
    if (t->fd >= 0 && t->fd != t->direct_fd) {
        close(t->fd);
    }
    t->fd = -1;
    (void)out_close_direct(t);
    if (t->tmp_path != NULL) {
        unlink(t->tmp_path);
        free(t->tmp_path);
        t->tmp_path = NULL;
    }
    free(t->dest);
    t->dest = NULL;
    out_release_buf(t);
}

/* ------------------------------------------------------------------------------------------
 * Progress bar (stderr is a terminal and the input a regular file above 8 MiB)
 * ------------------------------------------------------------------------------------------ */

struct progress {
    bool on;
    uint64_t total, done;
    struct timespec start, last;
};

static double ts_sec(struct timespec a, struct timespec b)
{
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static void progress_start(struct progress *p, const struct esdk_opts *o, int in_fd)
{
    struct stat st;
    memset(p, 0, sizeof(*p));
    if (o->quiet || !isatty(STDERR_FILENO) || fstat(in_fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size <= ESDK_CLI_PROGRESS_MIN) {
        return;
    }
    p->on = true;
    p->total = (uint64_t)st.st_size;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    p->last = p->start;
}

static void progress_draw(struct progress *p, bool final)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!final && ts_sec(p->last, now) * 1e9 < ESDK_CLI_PROGRESS_INTERVAL_NS) {
        return;
    }
    p->last = now;
    double el = ts_sec(p->start, now);
    double mbs = el > 0 ? (double)p->done / 1e6 / el : 0.0;
    unsigned pct = p->total ? (unsigned)(p->done * 100 / p->total) : 100;
    if (pct > 100) {
        pct = 100;
    }
    char bar[31];
    unsigned fill = pct * 30 / 100;
    for (unsigned i = 0; i < 30; i++) {
        bar[i] = i < fill ? '#' : ' ';
    }
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3u%% %8.1f MB/s", bar, pct, mbs);
    if (final) {
        fputc('\n', stderr);
    }
}

static void progress_add(struct progress *p, size_t n)
{
    if (p->on) {
        p->done += n;
        progress_draw(p, false);
    }
}

static void progress_end(struct progress *p, bool ok)
{
    if (p->on) {
        if (ok) {
            progress_draw(p, true);
        } else {
            fputc('\n', stderr);
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * One message: stream input -> (base64) -> encryptor/decryptor -> (base64) -> output
 * ------------------------------------------------------------------------------------------ */

struct stream_ctx {
    const struct esdk_opts *o;
    struct out_target *out;
    coffer_buf b64_carry;      /* --encode: up to 2 bytes not yet encoded */
    coffer_buf b64_tmp;        /* scratch for encoding/decoding one chunk */
    const coffer_ec *required; /* decrypt: pairs that must be in the message */
    coffer_decryptor *dec;     /* decrypt: to read the header before releasing output */
    bool ec_checked, ec_mismatch, io_failed;
};

/* Decrypt -c: every given pair must be in the message's context (as aws-encryption-cli). */
static bool ec_contains(const coffer_ec *have, const coffer_ec *want)
{
    for (size_t i = 0; i < coffer_ec_count(want); i++) {
        const uint8_t *k, *v, *hv;
        size_t kl, vl, hvl = 0;
        if (coffer_ec_get_at(want, i, &k, &kl, &v, &vl) != 0) {
            return false;
        }
        hv = coffer_ec_get(have, k, kl, &hvl);
        if (hv == NULL || hvl != vl || memcmp(hv, v, vl) != 0) {
            return false;
        }
    }
    return true;
}

static bool stream_ec_ok(struct stream_ctx *s)
{
    if (s->required == NULL || s->ec_checked) {
        return !s->ec_mismatch;
    }
    const coffer_header *h = coffer_decryptor_header(s->dec);
    if (h == NULL) {
        return true; /* no header yet: nothing released */
    }
    s->ec_checked = true;
    s->ec_mismatch = !ec_contains(coffer_header_ec(h), s->required);
    return !s->ec_mismatch;
}

static int stream_emit(struct stream_ctx *s, const uint8_t *p, size_t n)
{
    if (out_write(s->out, p, n) != 0) {
        s->io_failed = true;
        return -1;
    }
    return 0;
}

static int stream_sink(void *ctx, const uint8_t *p, size_t n)
{
    struct stream_ctx *s = ctx;
    if (!stream_ec_ok(s)) {
        return -1;
    }
    if (!s->o->encode) {
        return stream_emit(s, p, n);
    }
    /* base64 in groups of 3 input bytes so chunks concatenate into one valid encoding */
    while (n > 0) {
        size_t take = n;
        if (s->b64_carry.len > 0 || take < 3) {
            take = 3 - s->b64_carry.len < n ? 3 - s->b64_carry.len : n;
            if (coffer_buf_append(&s->b64_carry, p, take) != COFFER_OK) {
                return -1;
            }
            p += take;
            n -= take;
            if (s->b64_carry.len < 3) {
                continue;
            }
            coffer_buf_reset(&s->b64_tmp);
            if (coffer_b64_encode(coffer_buf_cursor(&s->b64_carry), &s->b64_tmp) != COFFER_OK) {
                return -1;
            }
            coffer_buf_reset(&s->b64_carry);
        } else {
            take = n - n % 3;
            coffer_buf_reset(&s->b64_tmp);
            if (coffer_b64_encode(coffer_cursor_from(p, take), &s->b64_tmp) != COFFER_OK) {
                return -1;
            }
            p += take;
            n -= take;
        }
        if (stream_emit(s, s->b64_tmp.data, s->b64_tmp.len) != 0) {
            return -1;
        }
    }
    return 0;
}

static int stream_b64_flush(struct stream_ctx *s)
{
    if (!s->o->encode || s->b64_carry.len == 0) {
        return 0;
    }
    coffer_buf_reset(&s->b64_tmp);
    if (coffer_b64_encode(coffer_buf_cursor(&s->b64_carry), &s->b64_tmp) != COFFER_OK) {
        return -1;
    }
    coffer_buf_reset(&s->b64_carry);
    return stream_emit(s, s->b64_tmp.data, s->b64_tmp.len);
}

/* --decode: strips whitespace, decodes whole 4-char groups, keeps the rest in `carry`. */
static int b64_decode_chunk(coffer_buf *carry, const uint8_t *in, size_t n, coffer_buf *out, bool last)
{
    coffer_buf_reset(out);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            continue;
        }
        if (coffer_buf_append_u8(carry, c) != COFFER_OK) {
            return -1;
        }
    }
    size_t whole = last ? carry->len : carry->len - carry->len % 4;
    if (last && carry->len % 4 != 0) {
        return -1;
    }
    if (whole == 0) {
        return 0;
    }
    if (coffer_b64_decode(coffer_cursor_from(carry->data, whole), out) != COFFER_OK) {
        return -1;
    }
    memmove(carry->data, carry->data + whole, carry->len - whole);
    carry->len -= whole;
    return 0;
}

struct run_result {
    int status;      /* library status of the failure, 0 when none */
    const char *why; /* our own reason, when not the library's */
};

static int engine_update(const struct esdk_opts *o, coffer_encryptor *e, coffer_decryptor *d,
                         const uint8_t *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    return o->mode == MODE_ENCRYPT ? coffer_encryptor_update(e, p, n) : coffer_decryptor_update(d, p, n);
}

/* Reads `in_fd` to the end through the engine. */
static void stream_pump(const struct esdk_opts *o, int in_fd, coffer_encryptor *e, coffer_decryptor *d,
                        struct stream_ctx *s, struct run_result *res)
{
    uint8_t *buf = coffer_secret_alloc(ESDK_CLI_IN_BUF); /* plaintext passes through it */
    /* --decode on encrypt: the base64 text and what it decodes to are the plaintext */
    coffer_buf carry, decoded;
    coffer_buf_init(&carry, o->mode == MODE_ENCRYPT);
    coffer_buf_init(&decoded, o->mode == MODE_ENCRYPT);
    struct progress pr;
    progress_start(&pr, o, in_fd);
    if (buf == NULL) {
        res->why = "out of memory";
        goto out;
    }
    for (;;) {
        ssize_t n = read(in_fd, buf, ESDK_CLI_IN_BUF);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            res->why = "cannot read the input";
            goto out;
        }
        progress_add(&pr, (size_t)n);
        const uint8_t *p = buf;
        size_t len = (size_t)n;
        if (o->decode) {
            if (b64_decode_chunk(&carry, buf, len, &decoded, n == 0) != 0) {
                res->why = "input is not valid base64";
                goto out;
            }
            p = decoded.data;
            len = decoded.len;
        }
        int rc = engine_update(o, e, d, p, len);
        if (rc != 0) {
            res->status = rc;
            goto out;
        }
        /* A short read means a pipe or terminal with nothing more for now: pass on what is
         * ready rather than hold it until the output buffer fills. */
        bool short_read = n > 0 && (size_t)n < ESDK_CLI_IN_BUF;
        if (short_read && s->out->fd == s->out->direct_fd && out_flush_with(s->out, NULL, 0) != 0) {
            s->io_failed = true;
            goto out;
        }
        if (n == 0) {
            break;
        }
    }
    int rc = o->mode == MODE_ENCRYPT ? coffer_encryptor_finish(e) : coffer_decryptor_finish(d);
    if (rc != 0) {
        res->status = rc;
        goto out;
    }
    if (stream_b64_flush(s) != 0) {
        res->why = "cannot write the output";
    }
out:
    progress_end(&pr, res->status == 0 && res->why == NULL);
    coffer_buf_free(&carry);
    coffer_buf_free(&decoded);
    if (buf != NULL) {
        coffer_secret_free(buf, ESDK_CLI_IN_BUF);
    }
}

/* ------------------------------------------------------------------------------------------
 * Metadata (one JSON line per message)
 * ------------------------------------------------------------------------------------------ */

static json_t *b64_json(const uint8_t *p, size_t n)
{
    coffer_buf b = COFFER_BUF_INIT;
    json_t *j = NULL;
    if (coffer_b64_encode(coffer_cursor_from(p, n), &b) == COFFER_OK) {
        j = json_stringn(b.len ? (const char *)b.data : "", b.len);
    }
    coffer_buf_free(&b);
    return j ? j : json_null();
}

/* UTF-8 text as a JSON string; other bytes as base64 (json_stringn rejects invalid UTF-8). */
static json_t *bytes_json(const uint8_t *p, size_t n)
{
    json_t *j = json_stringn((const char *)p, n);
    return j ? j : b64_json(p, n);
}

static json_t *header_json(const coffer_header *h)
{
    json_t *hj = json_object();
    json_t *ec = json_object();
    json_t *edks = json_array();
    char id[8];
    size_t mid_len = 0;
    const uint8_t *mid = coffer_header_message_id(h, &mid_len);
    const coffer_ec *hec = coffer_header_ec(h);
    snprintf(id, sizeof(id), "0x%04X", coffer_header_suite(h));
    json_object_set_new(hj, "version", json_integer(coffer_header_version(h)));
    json_object_set_new(hj, "algorithm", json_string(suite_name(coffer_header_suite(h))));
    json_object_set_new(hj, "algorithm_id", json_string(id));
    json_object_set_new(hj, "message_id", b64_json(mid, mid_len));
    for (size_t i = 0; i < coffer_ec_count(hec); i++) {
        const uint8_t *k, *v;
        size_t kl, vl;
        if (coffer_ec_get_at(hec, i, &k, &kl, &v, &vl) == 0) {
            json_t *key = bytes_json(k, kl);
            if (json_is_string(key)) {
                json_object_setn_new_nocheck(ec, json_string_value(key), json_string_length(key),
                                             bytes_json(v, vl));
            }
            json_decref(key);
        }
    }
    json_object_set_new(hj, "encryption_context", ec);
    for (size_t i = 0; i < coffer_header_edk_count(h); i++) {
        coffer_edk edk;
        if (coffer_header_edk(h, i, &edk) != 0) {
            continue;
        }
        json_t *kp = json_object();
        json_object_set_new(kp, "provider_id", bytes_json(edk.provider_id, edk.provider_id_len));
        json_object_set_new(kp, "key_info", b64_json(edk.provider_info, edk.provider_info_len));
        json_array_append_new(edks, json_pack("{s:o}", "key_provider", kp));
    }
    json_object_set_new(hj, "encrypted_data_keys", edks);
    json_object_set_new(hj, "content_type", json_string(coffer_header_framed(h) ? "framed" : "non-framed"));
    json_object_set_new(hj, "frame_length", json_integer(coffer_header_frame_length(h)));
    return hj;
}

static json_t *keys_json(const struct esdk_opts *o, const struct key_info *infos)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < o->n_keys; i++) {
        const struct key_info *k = &infos[i];
        if (!k->used) {
            continue;
        }
        json_t *kj = json_object();
        json_object_set_new(kj, "provider", json_string(k->provider));
        if (strcmp(k->provider, "aws-kms") == 0) {
            json_t *ids = json_array();
            for (size_t j = 1; j < k->spec.n; j++) {
                const char *v = kv_value(k->spec.v[j], "key");
                if (v != NULL) {
                    json_array_append_new(ids, json_string(v));
                }
            }
            json_object_set_new(kj, "key_ids", ids);
        } else {
            json_object_set_new(kj, "namespace", k->name_ns ? json_string(k->name_ns) : json_null());
            json_object_set_new(kj, "name", k->name ? json_string(k->name) : json_null());
        }
        json_array_append_new(arr, kj);
    }
    return arr;
}

static int metadata_write(FILE *meta, const struct esdk_opts *o, const char *in, const char *out,
                          const coffer_header *h, const struct key_info *infos)
{
    json_t *j = json_object();
    json_object_set_new(j, "mode", json_string(o->mode == MODE_ENCRYPT ? "encrypt" : "decrypt"));
    json_object_set_new(j, "input", json_string(in));
    json_object_set_new(j, "output", json_string(out));
    json_object_set_new(j, "header", h ? header_json(h) : json_null());
    json_object_set_new(j, "wrapping_keys", keys_json(o, infos));
    char *line = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    int rc = -1;
    if (line != NULL && fprintf(meta, "%s\n", line) > 0 && fflush(meta) == 0) {
        rc = 0;
    }
    free(line);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Per-file driver
 * ------------------------------------------------------------------------------------------ */

struct esdk_run {
    const struct esdk_opts *o;
    coffer_cmm *cmm;
    coffer_ec *ec; /* encrypt: the context; decrypt: the required pairs (or NULL) */
    struct key_info infos[ESDK_CLI_MAX_KEYS];
    FILE *meta; /* NULL = no metadata */
};

static int engine_new(struct esdk_run *r, struct stream_ctx *s, int in_fd, coffer_encryptor **e,
                      coffer_decryptor **d)
{
    const struct esdk_opts *o = r->o;
    int rc = 0;
    if (o->mode == MODE_ENCRYPT) {
        struct stat st;
        *e = coffer_encryptor_new(r->cmm);
        if (*e == NULL) {
            return -1;
        }
        rc |= coffer_encryptor_set_output(*e, stream_sink, s);
        rc |= coffer_encryptor_set_commitment_policy(*e, o->policy);
        rc |= coffer_encryptor_set_ec(*e, r->ec);
        if (o->suite) {
            rc |= coffer_encryptor_set_suite(*e, o->suite);
        }
        if (o->frame_length) {
            rc |= coffer_encryptor_set_frame_length(*e, o->frame_length);
        }
        if (o->max_edks) {
            rc |= coffer_encryptor_set_max_edks(*e, o->max_edks);
        }
        if (fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode) && !o->decode) {
            rc |= coffer_encryptor_set_plaintext_length(*e, (uint64_t)st.st_size);
        }
        return rc;
    }
    *d = coffer_decryptor_new(r->cmm);
    if (*d == NULL) {
        return -1;
    }
    s->dec = *d;
    rc |= coffer_decryptor_set_output(*d, stream_sink, s);
    rc |= coffer_decryptor_set_commitment_policy(*d, o->policy);
    if (o->max_edks) {
        rc |= coffer_decryptor_set_max_edks(*d, o->max_edks);
    }
    /* Memory stays constant: release is held back by the output target (temp file + rename,
     * or the --buffer spool), never by holding the plaintext in memory. */
    rc |= coffer_decryptor_set_streaming_release(*d, true);
    return rc;
}

static void report_failure(const struct esdk_run *r, const char *in, const struct stream_ctx *s,
                           const struct run_result *res)
{
    const char *what = r->o->mode == MODE_ENCRYPT ? "encryption" : "decryption";
    if (s->ec_mismatch) {
        fprintf(stderr, "%s: %s: %s failed: the encryption context does not hold the required pairs\n",
                r->o->cmd, in, what);
    } else if (s->io_failed) {
        fprintf(stderr, "%s: %s: cannot write the output: %s\n", r->o->cmd, in, strerror(errno));
    } else if (res->why != NULL) {
        fprintf(stderr, "%s: %s: %s failed: %s\n", r->o->cmd, in, what, res->why);
    } else {
        fprintf(stderr, "%s: %s: %s failed: %s (%s)\n", r->o->cmd, in, what,
                coffer_status_message(res->status), coffer_status_name(res->status));
    }
}

/* Encrypts or decrypts one input (path or "-") into one output (path or "-"). */
static int esdk_one(struct esdk_run *r, const char *in, const char *out_path)
{
    const struct esdk_opts *o = r->o;
    int in_fd = strcmp(in, "-") == 0 ? STDIN_FILENO : open(in, O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        fprintf(stderr, "%s: cannot open input '%s': %s\n", o->cmd, in, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    struct out_target out;
    struct stream_ctx s;
    struct run_result res = {0, NULL};
    coffer_encryptor *e = NULL;
    coffer_decryptor *d = NULL;
    int rc = CLI_EXIT_FAILED;
    memset(&s, 0, sizeof(s));
    /* --encode on decrypt: both hold plaintext bytes or their base64 */
    coffer_buf_init(&s.b64_carry, o->mode == MODE_DECRYPT);
    coffer_buf_init(&s.b64_tmp, o->mode == MODE_DECRYPT);
    for (size_t i = 0; i < o->n_keys; i++) {
        r->infos[i].used = false;
    }
    if (out_open(&out, out_path, o->mode == MODE_DECRYPT && o->buffer) != 0) {
        fprintf(stderr, "%s: cannot create output '%s': %s\n", o->cmd, out_path, strerror(errno));
        rc = CLI_EXIT_USAGE;
        goto done;
    }
    s.o = o;
    s.out = &out;
    s.required = o->mode == MODE_DECRYPT ? r->ec : NULL;
    if (engine_new(r, &s, in_fd, &e, &d) != 0) {
        res.why = "cannot set up the stream";
        goto fail;
    }
    if (o->verbose > 0) {
        fprintf(stderr, "%s: %s -> %s\n", o->cmd, in, out_path);
    }
    stream_pump(o, in_fd, e, d, &s, &res);
    /* an empty plaintext never reaches the sink: check the required pairs here too */
    if (res.status == 0 && res.why == NULL && d != NULL && !stream_ec_ok(&s)) {
        goto fail;
    }
    if (res.status != 0 || res.why != NULL || s.io_failed || s.ec_mismatch) {
        goto fail;
    }
    if (out_commit(&out) != 0) {
        fprintf(stderr, "%s: cannot write output '%s': %s\n", o->cmd, out_path, strerror(errno));
        goto done;
    }
    const coffer_header *h = e ? coffer_encryptor_header(e) : coffer_decryptor_header(d);
    if (o->verbose > 0 && h != NULL) {
        fprintf(stderr, "%s: %s: suite %s, %zu data key(s)\n", o->cmd, in, suite_name(coffer_header_suite(h)),
                coffer_header_edk_count(h));
    }
    if (r->meta != NULL && metadata_write(r->meta, o, in, out_path, h, r->infos) != 0) {
        fprintf(stderr, "%s: cannot write metadata\n", o->cmd);
        goto done;
    }
    rc = CLI_EXIT_OK;
    goto done;
fail:
    report_failure(r, in, &s, &res);
    out_abort(&out);
done:
    out_abort(&out);
    coffer_encryptor_free(e);
    coffer_decryptor_free(d);
    coffer_buf_free(&s.b64_carry);
    coffer_buf_free(&s.b64_tmp);
    if (in_fd != STDIN_FILENO) {
        close(in_fd);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Paths and directories
 * ------------------------------------------------------------------------------------------ */

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *out_suffix(const struct esdk_opts *o)
{
    if (o->suffix != NULL) {
        return o->suffix;
    }
    return o->mode == MODE_ENCRYPT ? ESDK_CLI_ENC_SUFFIX : ESDK_CLI_DEC_SUFFIX;
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Walks in_dir, writing out_dir/<same relative name><suffix>. Returns the worst exit code. */
static int esdk_walk(struct esdk_run *r, const char *in_dir, const char *out_dir)
{
    int worst = CLI_EXIT_OK;
    DIR *dir = opendir(in_dir);
    if (dir == NULL) {
        fprintf(stderr, "%s: cannot read directory '%s': %s\n", r->o->cmd, in_dir, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    if (mkdir_p(out_dir) != 0) {
        fprintf(stderr, "%s: cannot create directory '%s': %s\n", r->o->cmd, out_dir, strerror(errno));
        closedir(dir);
        return CLI_EXIT_FAILED;
    }
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        char *src = NULL, *dst = NULL;
        struct stat st;
        int rc = CLI_EXIT_OK;
        if (asprintf(&src, "%s/%s", in_dir, de->d_name) < 0) {
            src = NULL;
            rc = CLI_EXIT_FAILED;
        } else if (lstat(src, &st) != 0) {
            rc = CLI_EXIT_FAILED;
        } else if (S_ISDIR(st.st_mode)) {
            rc = asprintf(&dst, "%s/%s", out_dir, de->d_name) < 0 ? (dst = NULL, CLI_EXIT_FAILED)
                                                                  : esdk_walk(r, src, dst);
        } else if (S_ISREG(st.st_mode)) {
            rc = asprintf(&dst, "%s/%s%s", out_dir, de->d_name, out_suffix(r->o)) < 0
                     ? (dst = NULL, CLI_EXIT_FAILED)
                     : esdk_one(r, src, dst);
        } else if (!r->o->quiet) {
            fprintf(stderr, "%s: skipping '%s' (not a regular file or directory)\n", r->o->cmd, src);
        }
        if (rc > worst) {
            worst = rc;
        }
        free(src);
        free(dst);
    }
    closedir(dir);
    return worst;
}

/* True when `inner` is `outer` or lies below it (after resolving both). */
static bool path_within(const char *inner, const char *outer)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(outer, b) == NULL || realpath(inner, a) == NULL) {
        return false;
    }
    size_t n = strlen(b);
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* True when x and y name one file (through any symlinks) that cannot be both read and written
 * in one run. A character device can (`-i /dev/zero -o /dev/null`, a terminal). */
static bool same_file(const char *x, const char *y)
{
    struct stat a, b;
    return stat(x, &a) == 0 && stat(y, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino &&
           !S_ISCHR(a.st_mode);
}

static int esdk_dispatch(struct esdk_run *r)
{
    const struct esdk_opts *o = r->o;
    bool in_stdin = strcmp(o->input, "-") == 0, out_stdout = strcmp(o->output, "-") == 0;
    struct stat st;
    if (!in_stdin && stat(o->input, &st) != 0) {
        return usage_err(o, "input '%s' does not exist", o->input);
    }
    if (!in_stdin && S_ISDIR(st.st_mode)) {
        if (!o->recursive) {
            return usage_err(o, "input '%s' is a directory: add -r/--recursive", o->input);
        }
        if (out_stdout || (!is_dir(o->output) && access(o->output, F_OK) == 0)) {
            return usage_err(o, "output '%s' must be a directory when the input is one", o->output);
        }
        if (mkdir_p(o->output) != 0) {
            fprintf(stderr, "%s: cannot create directory '%s': %s\n", o->cmd, o->output, strerror(errno));
            return CLI_EXIT_USAGE;
        }
        if (path_within(o->output, o->input)) {
            return usage_err(o, "output directory '%s' lies inside the input directory", o->output);
        }
        return esdk_walk(r, o->input, o->output);
    }
    if (!out_stdout && is_dir(o->output)) {
        /* a file into a directory: same name plus the suffix */
        const char *base = in_stdin ? NULL : strrchr(o->input, '/');
        base = in_stdin ? "stdin" : base ? base + 1 : o->input;
        char *dst = NULL;
        if (asprintf(&dst, "%s/%s%s", o->output, base, out_suffix(o)) < 0) {
            return CLI_EXIT_FAILED;
        }
        int rc = same_file(o->input, dst) ? usage_err(o, "input and output are the same file '%s'", dst)
                                          : esdk_one(r, o->input, dst);
        free(dst);
        return rc;
    }
    if (!in_stdin && !out_stdout && same_file(o->input, o->output)) {
        return usage_err(o, "input and output are the same file '%s'", o->input);
    }
    return esdk_one(r, o->input, o->output);
}

/* Opens --metadata-output. Opening truncates, so it must not name the input (which would be
 * lost before it is read) nor the output (whose rename would orphan the metadata). */
static int metadata_open(const struct esdk_opts *o, FILE **out)
{
    const char *m = o->metadata_output;
    if (strcmp(m, "-") == 0) {
        *out = stdout;
        return CLI_EXIT_OK;
    }
    bool in_named = strcmp(o->input, "-") != 0, out_named = strcmp(o->output, "-") != 0;
    if ((in_named && same_file(m, o->input)) || (out_named && same_file(m, o->output)) ||
        (out_named && strcmp(m, o->output) == 0)) {
        return usage_err(o, "metadata output '%s' is the input or the output", m);
    }
    *out = fopen(m, "w");
    if (*out == NULL) {
        return usage_err(o, "cannot open metadata output '%s'", m);
    }
    return CLI_EXIT_OK;
}

static int esdk_main(enum esdk_mode mode, int argc, char **argv)
{
    struct esdk_opts o;
    struct esdk_run r;
    coffer_keyring *kr = NULL;
    memset(&o, 0, sizeof(o));
    memset(&r, 0, sizeof(r));
    o.mode = mode;
    o.cmd = mode == MODE_ENCRYPT ? "coffer encrypt" : "coffer decrypt";
    o.policy = COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT;
    int rc = opts_parse(&o, argc, argv);
    if (rc != CLI_EXIT_OK) {
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    r.o = &o;
    rc = keyring_build(&o, r.infos, &kr);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    rc = cmm_build(&o, kr, &r.cmm);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    rc = ec_build(&o, &r.ec);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    if (mode == MODE_DECRYPT && coffer_ec_count(r.ec) == 0) {
        coffer_ec_free(r.ec);
        r.ec = NULL;
    }
    if (o.metadata_output != NULL) {
        rc = metadata_open(&o, &r.meta);
        if (rc != CLI_EXIT_OK) {
            goto out;
        }
    }
    rc = esdk_dispatch(&r);
out:
    if (r.meta != NULL && r.meta != stdout) {
        fclose(r.meta);
    }
    coffer_ec_free(r.ec);
    coffer_cmm_release(r.cmm);
    coffer_keyring_release(kr);
    return rc;
}

int cli_encrypt_main(int argc, char **argv)
{
    return esdk_main(MODE_ENCRYPT, argc, argv);
}

int cli_decrypt_main(int argc, char **argv)
{
    return esdk_main(MODE_DECRYPT, argc, argv);
}
