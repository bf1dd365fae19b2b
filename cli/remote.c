// SPDX-License-Identifier: MIT
/* apply, weight, status: requests to sluiced over its unix socket. The daemon does the
 * work and formats the answer; this side sends the files and prints what comes back. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "compile/compile.h"
#include "main.h"
#include "nodes.h"
#include "common/proto.h"

static void say_timeout(void)
{
	p_err("sluiced at %s did not answer within %u s: it is stuck or busy; check its log, or raise --timeout",
	      cli.socket, cli.timeout_s);
}

/* Non-blocking, so that a daemon whose backlog is full (stopped, say) cannot hold the CLI past its deadline. */
static int connect_daemon(uint64_t deadline_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(cli.socket) >= sizeof(sa.sun_path)) {
		p_err("socket path %s is too long", cli.socket);
		return -1;
	}
	strcpy(sa.sun_path, cli.socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), rc = -1, e;
	while (fd >= 0 && (rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa))) && errno == EAGAIN &&
	       proto_now_ms() < deadline_ms)
		usleep(10000);   /* the backlog is full: a unix socket cannot be polled for connect */
	if (!rc)
		return fd;
	e = errno;
	if (fd >= 0)
		close(fd);
	if (e == EAGAIN)
		say_timeout();
	else if (e == EACCES || e == EPERM)
		p_err("permission denied on %s: run sluice as root (the socket is mode 0600)", cli.socket);
	else
		p_err("cannot reach sluiced at %s (%s): start sluiced, or point --socket or SLUICE_SOCKET at its socket",
		      cli.socket, strerror(e));
	return -1;
}

static void add_common(struct msg *req, const char *cmd)
{
	msg_add_str(req, "cmd", cmd);
	if (cli.json)
		msg_add_str(req, "json", "1");
	if (cli.namespace)
		msg_add_str(req, "namespace", cli.namespace);
	if (cli.cluster_domain)
		msg_add_str(req, "domain", cli.cluster_domain);
	for (int i = 0; i < cli.argc; i++)
		msg_add_str(req, "arg", cli.argv[i]);
}

static int round_trip(struct msg *req)
{
	uint64_t deadline = proto_now_ms() + (uint64_t)cli.timeout_s * 1000;
	int fd = connect_daemon(deadline);
	if (fd < 0) {
		msg_free(req);
		return EXIT_UNREACHABLE;
	}
	struct msg resp = { 0 };
	int rc = msg_send(fd, req, deadline);
	if (!rc)
		rc = msg_recv(fd, &resp, deadline);
	close(fd);
	msg_free(req);
	if (rc) {
		if (rc == -ETIMEDOUT)
			say_timeout();
		else
			p_err("sluiced at %s did not answer (%s): check its log", cli.socket, strerror(-rc));
		msg_free(&resp);
		return EXIT_UNREACHABLE;
	}
	size_t len;
	const char *out = msg_get(&resp, "out", &len);
	if (out)
		fwrite(out, 1, len, stdout);
	const char *err = msg_get(&resp, "err", &len);
	if (err)
		fwrite(err, 1, len, stderr);
	const char *code = msg_get(&resp, "code", NULL);
	int exit_code = code ? atoi(code) : EXIT_UNREACHABLE;
	msg_free(&resp);
	return exit_code;
}

int do_apply(void)
{
	struct sources src = { 0 };
	struct diags d = { 0 };
	if (cli_read_sources(&src, &d))
		return EXIT_USAGE;
	if (d.n) {
		diags_report(&d, stdout, stderr, cli.json, ": nothing applied");
		diags_free(&d);
		sources_free(&src);
		return EXIT_INVALID;
	}
	struct msg req = { 0 };
	add_common(&req, "apply");
	for (size_t i = 0; i < src.n; i++) {
		msg_add_str(&req, "file", src.v[i].name);
		msg_add(&req, "data", src.v[i].buf, src.v[i].len);
	}
	sources_free(&src);
	return round_trip(&req);
}

int do_weight(void)
{
	if (cli.argc < 2) {
		p_err("usage: sluice weight SERVICE[.NAMESPACE] SUBSET=WEIGHT...; e.g. sluice weight purchase-history v1=80 v2=20");
		return EXIT_USAGE;
	}
	if (cli.cluster)
		return cluster_weight();
	struct msg req = { 0 };
	add_common(&req, "weight");
	return round_trip(&req);
}

int do_status(void)
{
	if (cli.cluster)
		return cluster_status();
	if (cli.argc > 1) {
		p_err("usage: sluice status [SERVICE[.NAMESPACE]]");
		return EXIT_USAGE;
	}
	struct msg req = { 0 };
	add_common(&req, "status");
	return round_trip(&req);
}
