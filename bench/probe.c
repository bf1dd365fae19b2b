/* SPDX-License-Identifier: MIT */
/*
 * probe: when does a weight change reach new connections? Opens one short
 * HTTP connection after another to a service (as fast as it can, one at a
 * time) and reads which version answered. Once an answer has come, it writes
 * "ready" (the caller may now start the change); when the version EXPECT
 * answers, it prints one JSON line and exits 0:
 *   {"first_new_us":T,"last_old_us":T,"probes":N,"errors":E}
 * first_new_us: CLOCK_REALTIME, in microseconds, at which the first answer of
 * the new version arrived (an upper bound of the moment the change took
 * effect: one connection later at most); last_old_us: the start of the last
 * connection answered by another version (a lower bound). Exits 1 after
 * --timeout-ms without the expected version, 2 on a bad command line.
 *
 *   probe --target ADDR:PORT --expect VERSION [--timeout-ms MS]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* One connection: 0 and the version in VERSION, or -1 (errno-like failure). */
static int probe_once(const struct sockaddr_in *target, char *version, size_t version_len)
{
	static const char request[] = "GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n";
	struct timeval tv = { .tv_sec = 1 };
	char buf[4096];
	size_t used = 0;
	ssize_t n;
	int fd, one = 1;
	const char *v, *end;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)target, sizeof(*target)) < 0 ||
	    send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(request) - 1)) {
		close(fd);
		return -1;
	}
	while (used < sizeof(buf) - 1 && (n = recv(fd, buf + used, sizeof(buf) - 1 - used, 0)) > 0)
		used += (size_t)n;
	close(fd);
	buf[used] = '\0';
	v = strstr(buf, "\"version\":\"");
	if (!v)
		return -1;
	v += strlen("\"version\":\"");
	end = strchr(v, '"');
	if (!end || (size_t)(end - v) >= version_len)
		return -1;
	memcpy(version, v, (size_t)(end - v));
	version[end - v] = '\0';
	return 0;
}

static void usage(const char *why)
{
	fprintf(stderr, "probe: error: %s\nusage: probe --target ADDR:PORT --expect VERSION [--timeout-ms MS]\n", why);
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_in target = { .sin_family = AF_INET };
	const char *expect = NULL, *target_text = NULL;
	long timeout_ms = 30000;
	uint64_t deadline = 0, started, last_old = 0;
	unsigned long probes = 0, errors = 0;
	char version[64], host[64];
	int ready = 0;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage("every option takes a value");
		if (strcmp(argv[i], "--target") == 0)
			target_text = argv[++i];
		else if (strcmp(argv[i], "--expect") == 0)
			expect = argv[++i];
		else if (strcmp(argv[i], "--timeout-ms") == 0)
			timeout_ms = strtol(argv[++i], NULL, 10);
		else
			usage("unknown option");
	}
	if (!target_text || !expect || timeout_ms <= 0)
		usage("--target and --expect are required");
	const char *colon = strrchr(target_text, ':');
	if (!colon || (size_t)(colon - target_text) >= sizeof(host))
		usage("--target: expected IPv4:PORT");
	memcpy(host, target_text, (size_t)(colon - target_text));
	host[colon - target_text] = '\0';
	if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
		usage("--target: bad IPv4 address");
	target.sin_port = htons((uint16_t)atoi(colon + 1));

	uint64_t setup_deadline = now_us() + 5000000;
	for (;;) {
		started = now_us();
		if (!ready && started > setup_deadline) {
			printf("{\"error\":\"no answer from a version other than %s within 5 s\",\"probes\":%lu,\"errors\":%lu}\n",
			       expect, probes, errors);
			return 1;
		}
		if (ready && started > deadline) {
			printf("{\"error\":\"no answer from %s within %ld ms\",\"probes\":%lu,\"errors\":%lu}\n",
			       expect, timeout_ms, probes, errors);
			return 1;
		}
		probes++;
		if (probe_once(&target, version, sizeof(version)) < 0) {
			errors++;
			continue;
		}
		if (strcmp(version, expect) != 0) {
			last_old = started;
			if (!ready) {
				ready = 1;
				deadline = now_us() + (uint64_t)timeout_ms * 1000;
				printf("ready\n");
				fflush(stdout);
			}
		} else if (ready) {
			printf("{\"first_new_us\":%llu,\"last_old_us\":%llu,\"probes\":%lu,\"errors\":%lu}\n",
			       (unsigned long long)now_us(), (unsigned long long)last_old, probes, errors);
			return 0;
		}
	}
}
