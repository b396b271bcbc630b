/*
 * coffer-read-gcm FILE FRAME: the floor under `coffer encrypt -i FILE -o -` on this machine.
 * Reads FILE (expected in the page cache) in 256 KiB pieces, as the CLI does, and seals every
 * FRAME bytes with AES-256-GCM under a new IV, output discarded; then reads it again without
 * sealing. Prints both rates by CPU time (user + sys, as `openssl speed` counts user time):
 * `openssl speed` seals one hot buffer, so it never pays for bringing the bytes in from memory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/evp.h>

#define READ_SIZE (256u * 1024u)

static double cpu_seconds(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* Returns the bytes read, or -1; seals each frame when ctx is not NULL. */
static long long pass(const char *path, size_t frame, EVP_CIPHER_CTX *ctx, unsigned char *buf,
                      unsigned char *out)
{
    unsigned char iv[12] = {0}, tag[16];
    long long total = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf, READ_SIZE);
        if (n <= 0) {
            close(fd);
            return n == 0 ? total : -1;
        }
        for (size_t off = 0; ctx != NULL && off < (size_t)n; off += frame) {
            size_t len = (size_t)n - off < frame ? (size_t)n - off : frame;
            int ol;
            iv[11]++;
            if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
                EVP_EncryptUpdate(ctx, out, &ol, buf + off, (int)len) != 1 ||
                EVP_EncryptFinal_ex(ctx, out, &ol) != 1 ||
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, sizeof(tag), tag) != 1) {
                close(fd);
                return -1;
            }
        }
        total += n;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: coffer-read-gcm FILE FRAME\n");
        return 2;
    }
    size_t frame = strtoul(argv[2], NULL, 0);
    unsigned char key[32] = {0}, iv[12] = {0};
    unsigned char *buf = malloc(READ_SIZE), *out = malloc(READ_SIZE);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (frame == 0 || frame > READ_SIZE || buf == NULL || out == NULL || ctx == NULL ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) != 1) {
        fprintf(stderr, "coffer-read-gcm: setup failed (FRAME must be 1..%u)\n", READ_SIZE);
        return 1;
    }
    double t0 = cpu_seconds();
    long long sealed = pass(argv[1], frame, ctx, buf, out);
    double t1 = cpu_seconds();
    long long read_only = pass(argv[1], frame, NULL, buf, out);
    double t2 = cpu_seconds();
    if (sealed < 0 || read_only < 0) {
        perror("coffer-read-gcm");
        return 1;
    }
    printf("read_gcm_MBps=%.1f read_MBps=%.1f\n", (double)sealed / (t1 - t0) / 1e6,
           (double)read_only / (t2 - t1) / 1e6);
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    free(out);
    return 0;
}
