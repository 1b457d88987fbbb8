/*
 * The physical limit for Rekey's RPC benchmark: length-prefixed frames echoed over loopback TCP
 * in plain C, with no protobuf and no framework.
 *
 *   pingpong epoll-server                one thread, epoll, non-blocking sockets: the baseline
 *   pingpong epoll-client PORT SIZE CALLERS SECONDS
 *                                        one thread, epoll, CALLERS connections with one call in
 *                                        flight each: the baseline's load
 *   pingpong server                      thread per connection, blocking (the first baseline)
 *   pingpong client PORT SIZE CALLERS SECONDS
 *                                        CALLERS threads, one connection each, sequential calls
 *
 * Servers print their port and echo frames; clients print "calls seconds p50_us p99_us". A
 * client's frame holds a valid rekey.testing.v1.EchoRequest (field 1, text), so a server that
 * decodes it (RekeyBenchmark nio-server) answers a frame of the same size.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

/* Fills `payload` (size bytes) with an EchoRequest whose text fills it: tag, varint length, x…. */
static void fill_echo_request(unsigned char *payload, int size) {
    int text = size - 2;
    int header = 2;
    if (text >= 128) {
        text = size - 3;
        header = 3;
    }
    payload[0] = 0x0a;
    if (header == 2) {
        payload[1] = (unsigned char)text;
    } else {
        payload[1] = (unsigned char)(0x80 | (text & 0x7f));
        payload[2] = (unsigned char)(text >> 7);
    }
    memset(payload + header, 'x', (size_t)text);
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

/* A listening socket on a free loopback port, whose number goes to standard output; -1 on failure. */
static int listen_on_loopback(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 128) < 0) {
        perror("listen");
        return -1;
    }
    getsockname(listener, (struct sockaddr *)&address, &length);
    printf("%d\n", ntohs(address.sin_port));
    fflush(stdout);
    return listener;
}

static int run_server(void) {
    int listener = listen_on_loopback();
    if (listener < 0) return 1;
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
    fill_echo_request((unsigned char *)frame + 4, c->size);
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


/* ---- epoll: one thread serves every connection ---- */

struct connection {
    int fd;
    unsigned char *in;
    size_t in_used, in_capacity;
    unsigned char *out;
    size_t out_used, out_sent, out_capacity;
    int want_write;
};

static void grow(unsigned char **buffer, size_t *capacity, size_t needed) {
    if (needed <= *capacity) return;
    size_t next = *capacity ? *capacity : 4096;
    while (next < needed) next *= 2;
    *buffer = realloc(*buffer, next);
    *capacity = next;
}

static void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Writes what is pending; returns -1 on a dead connection, else whether some is left. */
static int flush_out(struct connection *c) {
    while (c->out_sent < c->out_used) {
        ssize_t n = write(c->fd, c->out + c->out_sent, c->out_used - c->out_sent);
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        c->out_sent += (size_t)n;
    }
    c->out_used = c->out_sent = 0;
    return 0;
}

static void close_connection(int epoll, struct connection *c) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static int run_epoll_server(void) {
    int listener = listen_on_loopback();
    if (listener < 0) return 1;
    set_nonblocking(listener);
    int epoll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            struct connection *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept(listener, NULL, NULL)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    set_nonblocking(fd);
                    struct connection *fresh = calloc(1, sizeof *fresh);
                    fresh->fd = fd;
                    struct epoll_event add = {.events = EPOLLIN, .data.ptr = fresh};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &add);
                }
                continue;
            }
            if (events[i].events & (EPOLLHUP | EPOLLERR)) {
                close_connection(epoll, c);
                continue;
            }
            int dead = 0;
            if (events[i].events & EPOLLIN) {
                for (;;) {
                    grow(&c->in, &c->in_capacity, c->in_used + 65536);
                    ssize_t n = read(c->fd, c->in + c->in_used, c->in_capacity - c->in_used);
                    if (n == 0 || (n < 0 && errno != EAGAIN)) { dead = 1; break; }
                    if (n < 0) break;
                    c->in_used += (size_t)n;
                }
                /* Every whole frame in the buffer goes back, in one write. */
                size_t at = 0;
                while (c->in_used - at >= 4) {
                    uint32_t size;
                    memcpy(&size, c->in + at, 4);
                    size = ntohl(size);
                    if (size > (1u << 20)) { dead = 1; break; }
                    if (c->in_used - at < 4 + size) break;
                    grow(&c->out, &c->out_capacity, c->out_used + 4 + size);
                    memcpy(c->out + c->out_used, c->in + at, 4 + size);
                    c->out_used += 4 + size;
                    at += 4 + size;
                }
                memmove(c->in, c->in + at, c->in_used - at);
                c->in_used -= at;
            }
            if (!dead) {
                int left = flush_out(c);
                if (left < 0) {
                    dead = 1;
                } else if (left != c->want_write) {
                    c->want_write = left;
                    struct epoll_event change = {.events = EPOLLIN | (left ? EPOLLOUT : 0), .data.ptr = c};
                    epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &change);
                }
            }
            if (dead) close_connection(epoll, c);
        }
    }
}

struct call_state {
    int fd;
    size_t received;
    double started;
};

static int run_epoll_client(int port, int size, int callers, double seconds) {
    int epoll = epoll_create1(0);
    struct call_state *states = calloc((size_t)callers, sizeof *states);
    unsigned char *frame = calloc(1, 4 + (size_t)size);
    unsigned char *sink = malloc(65536);
    uint32_t length = htonl((uint32_t)size);
    memcpy(frame, &length, 4);
    fill_echo_request(frame + 4, size);
    long capacity = 8000000, kept = 0, total = 0;
    float *latencies = malloc(sizeof(float) * (size_t)capacity);
    for (int i = 0; i < callers; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
            perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        states[i].fd = fd;
        struct epoll_event add = {.events = EPOLLIN, .data.ptr = &states[i]};
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &add);
    }
    double end = now_us() + seconds * 1e6;
    /* A frame this small always fits the socket buffer: a blocking write sends it whole. */
    for (int i = 0; i < callers; i++) {
        states[i].started = now_us();
        if (write_all(states[i].fd, frame, 4 + (size_t)size) < 0) return 1;
    }
    struct epoll_event events[256];
    int open_calls = callers;
    while (open_calls > 0) {
        int ready = epoll_wait(epoll, events, 256, 1000);
        for (int e = 0; e < ready; e++) {
            struct call_state *state = events[e].data.ptr;
            ssize_t n = read(state->fd, sink, 65536);
            if (n <= 0) {
                fprintf(stderr, "connection lost\n");
                return 1;
            }
            state->received += (size_t)n;
            if (state->received < 4 + (size_t)size) continue;
            state->received = 0;
            double now = now_us();
            if (kept < capacity) latencies[kept++] = (float)(now - state->started);
            total++;
            if (now >= end) {
                open_calls--;
                continue;
            }
            state->started = now;
            if (write_all(state->fd, frame, 4 + (size_t)size) < 0) return 1;
        }
    }
    qsort(latencies, (size_t)kept, sizeof(float), compare);
    printf("%ld %.3f %.1f %.1f\n", total, seconds, kept ? latencies[kept / 2] : 0.0, kept ? latencies[(long)(kept * 0.99)] : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "server") == 0) return run_server();
    if (argc == 2 && strcmp(argv[1], "epoll-server") == 0) return run_epoll_server();
    if (argc == 6 && strcmp(argv[1], "epoll-client") == 0)
        return run_epoll_client(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc == 6 && strcmp(argv[1], "client") == 0)
        return run_client(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: pingpong epoll-server | epoll-client PORT SIZE CALLERS SECONDS | server | client PORT SIZE CALLERS SECONDS\n");
    return 2;
}
