/*
 * podnet-cni and podnet-ipam as installed by `podnet cni install`: a client of the podnet agent.
 *
 * A container runtime starts this program for every ADD, DEL and CHECK. It forwards the
 * environment and stdin to the agent's unix socket (protocol: podnet/cni/wire.py) and prints the
 * agent's answer: about 1 ms of start-up, where a Python interpreter costs 8 to 11 ms before any
 * work and pyroute2 another 115 to 200 ms. When no agent listens, it starts one (in a session of
 * its own, stdio on /dev/null: the runtime's restarts and pipes never reach it) and waits up to
 * 3 s for it to accept, as gpg-agent's clients do. When that fails, or the agent refuses (another
 * namespace), it runs the plugin in Python instead, so the plugin always works.
 *
 * Built at install time with the paths of this machine:
 *   cc -O2 -DPODNET_SOCKET='"..."' -DPODNET_PYTHON='"..."' -DPODNET_PATH='"..."' \
 *      -DPODNET_AUTOSTART=1 shim.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PODNET_SOCKET
#define PODNET_SOCKET "/run/podnet/cni.sock"
#endif
#ifndef PODNET_PYTHON
#define PODNET_PYTHON "/usr/bin/python3"
#endif
#ifndef PODNET_PATH
#define PODNET_PATH ""
#endif

#ifndef PODNET_AUTOSTART
#define PODNET_AUTOSTART 1
#endif

#define MAX_FIELD (16u << 20)
#define START_WAIT_MS 3000

extern char **environ;

static const char *plugin_name(const char *argv0) {
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    return strcmp(base, "podnet-ipam") == 0 ? "podnet-ipam" : "podnet-cni";
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int put_u32(int fd, uint32_t value) {
    unsigned char b[4] = {value >> 24, value >> 16, value >> 8, value};
    return write_all(fd, b, 4);
}

static int get_u32(int fd, uint32_t *value) {
    unsigned char b[4];
    if (read_all(fd, b, 4) < 0) return -1;
    *value = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
    return 0;
}

static int put_field(int fd, const char *data, size_t len) {
    if (put_u32(fd, (uint32_t)len) < 0) return -1;
    return write_all(fd, data, len);
}

static char *get_field(int fd, uint32_t *len) {
    if (get_u32(fd, len) < 0 || *len > MAX_FIELD) return NULL;
    char *buf = malloc(*len + 1);
    if (!buf || read_all(fd, buf, *len) < 0) { free(buf); return NULL; }
    return buf;
}

static char *read_stdin(size_t *len) {
    size_t cap = 8192, used = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) return NULL;
        if (used == cap) {
            if (cap >= MAX_FIELD) { free(buf); return NULL; }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) { free(buf); return NULL; }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(0, buf + used, cap - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { free(buf); return NULL; }
        if (n == 0) break;
        used += (size_t)n;
    }
    *len = used;
    return buf;
}

/* Run the plugin in Python; stdin is handed over through a memfd when we already read it. */
static void run_in_python(const char *plugin, const char *data, size_t len, int have_data) {
    if (have_data) {
        int mem = memfd_create("podnet-cni-stdin", 0);
        if (mem < 0 || write_all(mem, data, len) < 0 || lseek(mem, 0, SEEK_SET) < 0 ||
            dup2(mem, 0) < 0) {
            perror("podnet-cni: cannot pass stdin on");
            exit(1);
        }
        close(mem);
    }
    static const char code[] =
        "import sys\n"
        "path, name = sys.argv[1], sys.argv[2]\n"
        "if path: sys.path.insert(0, path)\n"
        "sys.argv = [name]\n"
        "from podnet.cni.client import main\n"
        "sys.exit(main(name, use_agent=False))\n";
    char *argv[] = {PODNET_PYTHON, "-I", "-c", (char *)code, PODNET_PATH, (char *)plugin, NULL};
    execv(PODNET_PYTHON, argv);
    printf("{\"cniVersion\": \"1.0.0\", \"code\": 999, \"msg\": \"%s: cannot start %s: %s\", "
           "\"details\": \"run podnet cni install again\"}\n",
           plugin, PODNET_PYTHON, strerror(errno));
    exit(1);
}

static int try_connect(void) {
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, PODNET_SOCKET, sizeof(addr.sun_path) - 1);
    if (sock < 0) return -1;
    if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int saved = errno;
        close(sock);
        errno = saved;
        return -1;
    }
    return sock;
}

/* Start `podnet.cni.agent` in a session of its own; returns its PID (0 when fork failed). */
static pid_t start_agent(void) {
    static const char code[] =
        "import sys\n"
        "path, sock = sys.argv[1], sys.argv[2]\n"
        "if path: sys.path.insert(0, path)\n"
        "from podnet.cni.agent import main\n"
        "sys.exit(main([sock, '--detached']))\n";
    pid_t pid = fork();
    if (pid != 0) return pid < 0 ? 0 : pid;
    setsid();
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
    }
    close_range(3, ~0U, 0); /* nothing of the runtime's may stay open in a long-lived process */
    /* A clean environment: not the first caller's CNI_* variables. */
    char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    char *argv[] = {PODNET_PYTHON, "-I", "-c", (char *)code, PODNET_PATH, PODNET_SOCKET, NULL};
    execve(PODNET_PYTHON, argv, env);
    _exit(127);
}

/* Connect to the agent, starting it when nothing listens; -1 when there is none to be had. */
static int agent_socket(void) {
    int sock = try_connect();
    if (sock >= 0 || !PODNET_AUTOSTART || (errno != ENOENT && errno != ECONNREFUSED)) return sock;
    pid_t pid = start_agent();
    int alive = pid > 0;
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (int waited = 0; waited < START_WAIT_MS; waited += 5) {
        nanosleep(&pause, NULL);
        if ((sock = try_connect()) >= 0) return sock;
        int status;
        if (alive && waitpid(pid, &status, WNOHANG) == pid) {
            alive = 0;  /* exit 3: another agent won the race and is starting; wait for it */
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 3) return -1;
        }
    }
    return -1;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *plugin = plugin_name(argv[0]);
    size_t in_len = 0;
    char *in = read_stdin(&in_len);
    if (!in) {
        /* Over the cap (or unreadable): say so, rather than let Python read half of it. */
        printf("{\"cniVersion\": \"1.0.0\", \"code\": 6, \"msg\": \"the network configuration "
               "on stdin is too large (podnet reads at most %u bytes) or unreadable\", "
               "\"details\": \"a CNI configuration with its prevResult is a few kilobytes\"}\n",
               MAX_FIELD);
        return 1;
    }
    int sock = agent_socket();
    if (sock < 0) run_in_python(plugin, in, in_len, 1);

    size_t env_len = 0;
    for (char **e = environ; *e; e++) env_len += strlen(*e) + 1;
    char *env = malloc(env_len + 1), *p = env;
    if (!env) run_in_python(plugin, in, in_len, 1);
    for (char **e = environ; *e; e++) {
        size_t n = strlen(*e);
        memcpy(p, *e, n);
        p += n;
        *p++ = '\0';
    }
    if (env_len) env_len--; /* separators only between entries */

    uint32_t kind, code, out_len, err_len;
    char magic[4];
    if (write_all(sock, "PNQ1", 4) < 0 || put_field(sock, plugin, strlen(plugin)) < 0 ||
        put_field(sock, env, env_len) < 0 || put_field(sock, in, in_len) < 0 ||
        read_all(sock, magic, 4) < 0 || memcmp(magic, "PNR1", 4) != 0 ||
        get_u32(sock, &kind) < 0 || get_u32(sock, &code) < 0 || kind != 0)
        run_in_python(plugin, in, in_len, 1);
    char *out = get_field(sock, &out_len);
    char *err = out ? get_field(sock, &err_len) : NULL;
    if (!out || !err) run_in_python(plugin, in, in_len, 1);
    write_all(1, out, out_len);
    write_all(2, err, err_len);
    return (int)code;
}
