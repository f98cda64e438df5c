/*
 * The bind shim: preloaded (LD_PRELOAD) into the program cargo hot runs, so that a server
 * that binds its own port (std's or tokio's TcpListener::bind, actix's HttpServer::bind)
 * receives the listening socket cargo hot holds for that address, the same socket in every
 * program of the session. Connections that arrive while one program stops and the next starts
 * wait in that socket's queue instead of being refused. See src/held_ports.rs.
 *
 * bind(2) of a TCP socket to an address with a port is asked of cargo hot's broker, the Unix
 * socket named by CARGO_HOT_BIND: the request is one line, "ADDRESS v6only=0|1\n"; the answer
 * is one byte, 'y' with the held socket as SCM_RIGHTS ancillary data, or 'n'. On 'y' the
 * held socket takes the place of the program's own descriptor (dup3, keeping its number,
 * its close-on-exec flag and its blocking mode) and bind returns 0; on anything else
 * (another kind of socket, port 0, no broker, a broker that says no) the real bind runs,
 * so the program sees exactly what it would have seen without cargo hot.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

/* The line for an address: "127.0.0.1:3000" or "[::1]:3000", then " v6only=N\n". */
static int describe(int fd, const struct sockaddr *address, socklen_t length, char *line, size_t size) {
    char ip[INET6_ADDRSTRLEN];
    if (address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        if (v4->sin_port == 0 || !inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip)) return -1;
        return snprintf(line, size, "%s:%u v6only=0\n", ip, ntohs(v4->sin_port));
    }
    if (address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (v6->sin6_port == 0 || !inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip)) return -1;
        int only = 0;
        socklen_t only_length = sizeof only;
        if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, &only_length) != 0) only = 0;
        return snprintf(line, size, "[%s]:%u v6only=%d\n", ip, ntohs(v6->sin6_port), only ? 1 : 0);
    }
    return -1;
}

/* The held socket for this bind, or -1. */
static int ask_broker(int fd, const struct sockaddr *address, socklen_t length) {
    const char *path = getenv("CARGO_HOT_BIND");
    if (!path || !*path || !address) return -1;
    int type = 0;
    socklen_t type_length = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_length) != 0 || type != SOCK_STREAM) return -1;
    /* TCP only (not SCTP or MPTCP streams), of the address's family. */
    int protocol = 0, domain = 0;
    socklen_t protocol_length = sizeof protocol, domain_length = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &protocol_length) != 0 || protocol != IPPROTO_TCP) return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_length) != 0 || domain != address->sa_family) return -1;
    char line[INET6_ADDRSTRLEN + 32];
    int line_length = describe(fd, address, length, line, sizeof line);
    if (line_length <= 0 || (size_t)line_length >= sizeof line) return -1;

    struct sockaddr_un broker;
    memset(&broker, 0, sizeof broker);
    broker.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof broker.sun_path) return -1;
    strcpy(broker.sun_path, path);
    int channel = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (channel < 0) return -1;
    /* cargo hot answers at once; a broker that does not must not hang the program's start. */
    struct timeval patience = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(channel, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    setsockopt(channel, SOL_SOCKET, SO_SNDTIMEO, &patience, sizeof patience);
    int held = -1;
    ssize_t sent = -1;
    if (connect(channel, (struct sockaddr *)&broker, sizeof broker) == 0) {
        do {
            sent = send(channel, line, (size_t)line_length, MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
    }
    if (sent == line_length) {
        char answer = 0;
        struct iovec part = {.iov_base = &answer, .iov_len = 1};
        union {
            char bytes[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } control;
        struct msghdr message;
        memset(&message, 0, sizeof message);
        message.msg_iov = &part;
        message.msg_iovlen = 1;
        message.msg_control = control.bytes;
        message.msg_controllen = sizeof control.bytes;
        ssize_t got;
        do {
            got = recvmsg(channel, &message, MSG_CMSG_CLOEXEC);
        } while (got < 0 && errno == EINTR);
        /* A truncated control message (the program is out of descriptors) carries none. */
        struct cmsghdr *header = got == 1 && !(message.msg_flags & MSG_CTRUNC) ? CMSG_FIRSTHDR(&message) : NULL;
        if (header && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS &&
            header->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(&held, CMSG_DATA(header), sizeof held);
            if (answer != 'y') {
                close(held);
                held = -1;
            }
        }
    }
    close(channel);
    return held;
}

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    static bind_fn resolved;
    bind_fn real_bind = __atomic_load_n(&resolved, __ATOMIC_ACQUIRE);
    if (!real_bind) {
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
        __atomic_store_n(&resolved, real_bind, __ATOMIC_RELEASE);
    }
    int saved_errno = errno;
    int held = ask_broker(fd, address, length);
    if (held >= 0) {
        int descriptor_flags = fcntl(fd, F_GETFD);
        int status_flags = fcntl(fd, F_GETFL);
        int replaced = dup3(held, fd, descriptor_flags >= 0 && (descriptor_flags & FD_CLOEXEC) ? O_CLOEXEC : 0);
        if (replaced == fd) {
            /* The blocking mode belongs to the socket, shared with every program of the
             * session: make it what this program's own socket had. */
            int now = fcntl(fd, F_GETFL);
            if (now >= 0 && status_flags >= 0) fcntl(fd, F_SETFL, (now & ~O_NONBLOCK) | (status_flags & O_NONBLOCK));
            close(held);
            errno = saved_errno;
            return 0;
        }
        close(held);
    }
    errno = saved_errno;
    if (!real_bind) {
        errno = ENOSYS;
        return -1;
    }
    return real_bind(fd, address, length);
}
