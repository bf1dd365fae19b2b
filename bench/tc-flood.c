/* SPDX-License-Identifier: MIT */
/*
 * tc-flood: a UDP packet flood and its sink, for bench/tc-bench (packets per
 * second through one ingress path).
 *
 *   tc-flood sink --port P --seconds S [--ready FILE]
 *       counts datagrams received on UDP port P (every address, IPv4) for S
 *       seconds after the first one; prints {"packets":N,"seconds":S,"pps":X}
 *   tc-flood send --target A.B.C.D:P --seconds S [--flows F] [--size B]
 *       sends B-byte datagrams (default 18) from F sockets (default 16: F
 *       source ports, F flows) as fast as sendmmsg goes for S seconds; prints
 *       {"packets":N,"pps":X}
 *
 * Only ever aimed at the test addresses the bench script makes (198.18/16,
 * 198.19/16) inside its own namespaces.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "tc-flood: error: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int sink(int port, double seconds, const char *ready)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	static char bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1, rcvbuf = 8 << 20;
	unsigned long long n = 0;
	double t0 = 0, t;

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)))
		die("bind");
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (f)
			fclose(f);
	}
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	double start = now_s();
	for (;;) {
		int r = recvmmsg(fd, msgs, BATCH, 0, NULL);
		t = now_s();
		if (r > 0) {
			if (!t0)
				t0 = t;
			n += (unsigned long long)r;
		}
		if (t0 ? t - t0 >= seconds : t - start > 30)
			break;   /* S seconds of traffic, or nothing came in 30 s */
	}
	t = t0 ? now_s() - t0 : 0;
	printf("{\"packets\":%llu,\"seconds\":%.3f,\"pps\":%.0f}\n", n, t, t > 0 ? n / t : 0);
	return 0;
}

static int send_flood(const char *target, double seconds, int flows, int size)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	static char payload[1500];
	struct mmsghdr msgs[BATCH];
	struct iovec iov;
	int fds[256];
	char host[64];
	const char *colon = strrchr(target, ':');
	unsigned long long n = 0;
	double t0, t;

	if (!colon || (size_t)(colon - target) >= sizeof(host) || flows < 1 || flows > 256 || size < 0 || size > 1400) {
		fprintf(stderr, "tc-flood: error: bad --target, --flows (1..256) or --size (0..1400)\n");
		return 2;
	}
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = 0;
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "tc-flood: error: %s is not an IPv4 address\n", host);
		return 2;
	}
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	for (int i = 0; i < flows; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)))
			die("connect");
	}
	memset(payload, 'x', sizeof(payload));
	iov.iov_base = payload;
	iov.iov_len = (size_t)size;
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	t0 = now_s();
	for (unsigned long i = 0;; i++) {
		int r = sendmmsg(fds[i % (unsigned long)flows], msgs, BATCH, MSG_DONTWAIT);
		if (r > 0)
			n += (unsigned long long)r;
		if ((i & 15) == 0 && (t = now_s()) - t0 >= seconds)
			break;
	}
	t = now_s() - t0;
	printf("{\"packets\":%llu,\"pps\":%.0f}\n", n, n / t);
	return 0;
}

int main(int argc, char **argv)
{
	const char *target = NULL, *ready = NULL;
	double seconds = 5;
	int port = 0, flows = 16, size = 18;

	if (argc < 2)
		goto usage;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--target") && i + 1 < argc)
			target = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--flows") && i + 1 < argc)
			flows = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ready") && i + 1 < argc)
			ready = argv[++i];
		else
			goto usage;
	}
	if (!strcmp(argv[1], "sink") && port > 0)
		return sink(port, seconds, ready);
	if (!strcmp(argv[1], "send") && target)
		return send_flood(target, seconds, flows, size);
usage:
	fprintf(stderr, "usage: tc-flood sink --port P --seconds S [--ready FILE]\n"
			"       tc-flood send --target A.B.C.D:P --seconds S [--flows F] [--size B]\n");
	return 2;
}
