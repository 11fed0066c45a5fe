/*
 * resolve: the smallest program that resolves a name through its C library's stub
 * resolver, so the lab can watch glibc and musl side by side.
 *
 *   resolve NAME [HOLD_SECONDS]
 *
 * Calls getaddrinfo(NAME, AF_UNSPEC, SOCK_STREAM) once, prints one address per line,
 * then sleeps HOLD_SECONDS (at most 60) so a test can read /proc/PID/exe meanwhile.
 * Built at test time with `musl-gcc` (static and dynamic) by tests/src/lab/resolvers.rs.
 * Exit status: 0 resolved, 2 getaddrinfo failed, 64 usage.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s NAME [HOLD_SECONDS]\n", argv[0]);
        return 64;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "getaddrinfo %s: %s\n", argv[1], gai_strerror(rc));
    } else {
        for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
            char buf[INET6_ADDRSTRLEN];
            const void *a = ai->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            if (inet_ntop(ai->ai_family, a, buf, sizeof buf) != NULL)
                printf("%s\n", buf);
        }
        freeaddrinfo(res);
    }
    fflush(stdout);
    if (argc == 3) {
        long hold = strtol(argv[2], NULL, 10);
        if (hold > 0 && hold <= 60)
            sleep((unsigned)hold);
    }
    return rc == 0 ? 0 : 2;
}
