/*
 * The physical limit for Rekey's RPC benchmark: length-prefixed frames echoed over loopback TCP
 * in plain C, with no protobuf and no framework.
 *
 *   pingpong server                      listens on 127.0.0.1, prints its port, echoes frames
 *   pingpong client PORT SIZE CALLERS SECONDS
 *                                        CALLERS threads, one connection each, sequential calls;
 *                                        prints "calls seconds p50_us p99_us"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int read_all(int fd, void *buffer, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = read(fd, (char *)buffer + done, count - done);
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const void *buffer, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = write(fd, (const char *)buffer + done, count - done);
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One thread per connection keeps the server as simple as the client; blocking reads are what
 * a minimal echo does. */
static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buffer[1 << 16];
    for (;;) {
        uint32_t length;
        if (read_all(fd, &length, 4) < 0) break;
        uint32_t size = ntohl(length);
        if (size > sizeof buffer || read_all(fd, buffer, size) < 0) break;
        if (write_all(fd, &length, 4) < 0 || write_all(fd, buffer, size) < 0) break;
    }
    close(fd);
    return NULL;
}

static int run_server(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 128) < 0) {
        perror("listen");
        return 1;
    }
    getsockname(listener, (struct sockaddr *)&address, &length);
    printf("%d\n", ntohs(address.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t thread;
        pthread_create(&thread, NULL, serve, (void *)(intptr_t)fd);
        pthread_detach(thread);
    }
}

struct caller {
    int port;
    int size;
    double seconds;
    long calls;
    float *latencies;
    long capacity;
};

static void *call_loop(void *arg) {
    struct caller *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(c->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *frame = calloc(1, 4 + c->size), *reply = malloc(4 + c->size);
    uint32_t length = htonl((uint32_t)c->size);
    memcpy(frame, &length, 4);
    double end = now_us() + c->seconds * 1e6;
    for (;;) {
        double start = now_us();
        if (start >= end) break;
        if (write_all(fd, frame, 4 + c->size) < 0 || read_all(fd, reply, 4 + c->size) < 0) {
            fprintf(stderr, "connection lost\n");
            exit(1);
        }
        if (c->calls < c->capacity) c->latencies[c->calls] = (float)(now_us() - start);
        c->calls++;
    }
    close(fd);
    free(frame);
    free(reply);
    return NULL;
}

static int compare(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int run_client(int port, int size, int callers, double seconds) {
    struct caller *all = calloc(callers, sizeof *all);
    pthread_t *threads = calloc(callers, sizeof *threads);
    for (int i = 0; i < callers; i++) {
        all[i] = (struct caller){.port = port, .size = size, .seconds = seconds, .capacity = 4000000};
        all[i].latencies = malloc(sizeof(float) * all[i].capacity);
        pthread_create(&threads[i], NULL, call_loop, &all[i]);
    }
    long total = 0, kept = 0;
    for (int i = 0; i < callers; i++) {
        pthread_join(threads[i], NULL);
        total += all[i].calls;
        kept += all[i].calls < all[i].capacity ? all[i].calls : all[i].capacity;
    }
    float *merged = malloc(sizeof(float) * (kept ? kept : 1));
    long at = 0;
    for (int i = 0; i < callers; i++) {
        long n = all[i].calls < all[i].capacity ? all[i].calls : all[i].capacity;
        memcpy(merged + at, all[i].latencies, sizeof(float) * n);
        at += n;
    }
    qsort(merged, kept, sizeof(float), compare);
    printf("%ld %.3f %.1f %.1f\n", total, seconds, kept ? merged[kept / 2] : 0.0, kept ? merged[(long)(kept * 0.99)] : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "server") == 0) return run_server();
    if (argc == 6 && strcmp(argv[1], "client") == 0)
        return run_client(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: pingpong server | pingpong client PORT SIZE CALLERS SECONDS\n");
    return 2;
}
