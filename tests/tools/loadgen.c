// loadgen: the test client. Opens connections to one target (a service VIP),
// tallies which backend version answered each one, and reports failures by
// errno name, so a test can assert weights, refusals and connection stability.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BACKENDS     64            // one bit each in a connection's "seen" mask
#define MAX_ERRORS       64
#define MAX_FAILURE_LOG  1000
#define RX_MAX           65536         // largest HTTP answer accepted
#define IO_CHUNK         65536
#define UDP_MAX_PAYLOAD  60000         // leaves room for the greeting in one datagram
#define DURATION_MSG     64            // echo message size in --duration tcp mode
#define SIGNAL_TAG       UINT64_MAX

enum mode { MODE_HTTP, MODE_KEEPALIVE, MODE_TCP, MODE_UDP, MODE_UDP_CONNECTED };
static const char *mode_names[] = { "http", "keepalive", "tcp", "udp", "udp-connected" };

static struct {
	const char *target_text;
	struct sockaddr_storage target;
	socklen_t target_len;
	char target_str[INET6_ADDRSTRLEN + 8];
	enum mode mode;
	long n;
	long c;
	long requests_per_conn;
	const char *netns;
	const char *cgroup;
	long timeout_ms;
	bool sequence;
	double duration_s;
	long interval_ms;
	long bytes;
	bool bytes_set;
	long source_port;       /* connection k binds to source_port + k: no two flows share a port */
	bool json;
} opt = {
	.mode = MODE_HTTP, .n = 100, .c = 1, .requests_per_conn = 10,
	.timeout_ms = 2000, .interval_ms = 0,
};

// ---- results ---------------------------------------------------------------

struct backend {
	char name[128];
	char version[64];
	uint64_t count;            // answers from this backend
};

struct error_count {
	char name[32];
	uint64_t count;            // connections that failed with this error
};

// One long-lived connection of a --duration run.
struct conn_record {
	uint64_t seen;             // bit i: backends[i] answered on it
	uint64_t answers;
	int error;                 // index into errors[], -1 when it did not fail
};

struct failure_event {
	uint64_t t_us;
	uint32_t conn;
	int error;
};

static struct {
	struct backend backends[MAX_BACKENDS];
	int n_backends;
	struct error_count errors[MAX_ERRORS];
	int n_errors;
	uint64_t connections, ok, failed, answers, peer_mismatch, switched;
	int16_t *sequence;         // backend index per connection, in start order; -1 failed
	struct conn_record *records;
	size_t n_records, cap_records;
	struct failure_event failure_log[MAX_FAILURE_LOG];
	size_t n_failure_log;
	uint64_t failures_unlogged;
	bool interrupted;
	uint64_t elapsed_us;
} res;

// Log-linear latency histogram: exact below 128 us, then 64 buckets per power of two (<1.6% error).
#define HIST_BUCKETS (128 + 64 * 41)
static struct {
	uint64_t bucket[HIST_BUCKETS];
	uint64_t n, max;
} hist;

static int hist_index(uint64_t v)
{
	int e, shift;

	if (v < 128)
		return (int)v;
	if (v >= (1ull << 47))
		v = (1ull << 47) - 1;
	e = 63 - __builtin_clzll(v);
	shift = e - 6;
	return 128 + (e - 7) * 64 + (int)((v >> shift) - 64);
}

static uint64_t hist_value(int i)
{
	int e, m, shift;

	if (i < 128)
		return (uint64_t)i;
	e = (i - 128) / 64 + 7;
	m = (i - 128) % 64 + 64;
	shift = e - 6;
	return ((uint64_t)m << shift) + ((1ull << shift) >> 1);
}

static void hist_add(uint64_t us)
{
	hist.bucket[hist_index(us)]++;
	hist.n++;
	if (us > hist.max)
		hist.max = us;
}

static uint64_t hist_percentile(double p)
{
	uint64_t rank, cum = 0;

	if (hist.n == 0)
		return 0;
	rank = (uint64_t)ceil(p / 100.0 * (double)hist.n);
	if (rank == 0)
		rank = 1;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		cum += hist.bucket[i];
		if (cum >= rank)
			return hist_value(i) < hist.max ? hist_value(i) : hist.max;
	}
	return hist.max;
}

static int error_index(const char *name)
{
	for (int i = 0; i < res.n_errors; i++)
		if (strcmp(res.errors[i].name, name) == 0)
			return i;
	if (res.n_errors == MAX_ERRORS)
		return MAX_ERRORS - 1;     // the last slot collects any further kinds
	snprintf(res.errors[res.n_errors].name, sizeof(res.errors[0].name), "%s", name);
	return res.n_errors++;
}

static const char *errno_name(int err)
{
	static char buf[16];
	const char *name = strerrorname_np(err);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

static int backend_index(const char *name, size_t name_len, const char *version, size_t version_len)
{
	struct backend *b;

	if (name_len >= sizeof(b->name))
		name_len = sizeof(b->name) - 1;
	if (version_len >= sizeof(b->version))
		version_len = sizeof(b->version) - 1;
	for (int i = 0; i < res.n_backends; i++) {
		b = &res.backends[i];
		if (strlen(b->name) == name_len && memcmp(b->name, name, name_len) == 0 &&
		    strlen(b->version) == version_len && memcmp(b->version, version, version_len) == 0)
			return i;
	}
	if (res.n_backends == MAX_BACKENDS)
		return MAX_BACKENDS - 1;
	b = &res.backends[res.n_backends];
	memcpy(b->name, name, name_len);
	b->name[name_len] = '\0';
	memcpy(b->version, version, version_len);
	b->version[version_len] = '\0';
	return res.n_backends++;
}

// ---- connection slots --------------------------------------------------------

enum phase {
	PH_FREE,
	PH_CONNECTING,
	PH_GREETING,       // tcp: waiting for "NAME VERSION\n"
	PH_REQUEST,        // a request is out, its answer not complete yet
	PH_IDLE,           // --duration: connected, next request at next_at
	PH_LINGER,         // answered; waiting for the server's FIN so it, not we, holds TIME_WAIT
	PH_RETRY,          // --duration: failed; reconnect at next_at
};

struct slot {
	int fd;
	enum phase phase;
	uint32_t events;
	uint32_t generation;       // tags epoll events so a stale one is recognised
	uint32_t conn_id;          // start order of the current connection
	uint64_t t_start;          // connect() called
	uint64_t t_request;        // current request sent
	uint64_t deadline;         // 0: none
	uint64_t next_at;          // PH_IDLE / PH_RETRY
	uint64_t answers;          // on the current connection
	uint64_t seen;
	int first_backend;
	int greeted_backend;       // tcp: who sent the greeting
	bool close_requested;      // our request said Connection: close
	char req[512];
	size_t req_len, req_off;
	char *rx;
	size_t rx_len, rx_cap;
	uint64_t echo_sent, echo_checked, echo_goal;
	unsigned char *udp_payload;
	size_t udp_len;
};

static struct slot *slots;
static long active;
static long *free_slots;       // stack of PH_FREE slot indexes (counted runs)
static long free_top;
static int epoll_fd = -1, signal_fd = -1;
static uint64_t next_scan = UINT64_MAX;
static uint64_t last_scan;
static uint64_t t_zero;
static bool stopping;          // set by SIGINT/SIGTERM through the signalfd
static uint32_t next_conn_id;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static bool duration_mode(void)
{
	return opt.duration_s > 0;
}

static bool udp_mode(void)
{
	return opt.mode == MODE_UDP || opt.mode == MODE_UDP_CONNECTED;
}

static void set_deadline(struct slot *s, uint64_t t)
{
	s->deadline = t;
	if (t && t < next_scan)
		next_scan = t;
}

static void set_next_at(struct slot *s, uint64_t t)
{
	s->next_at = t;
	if (t < next_scan)
		next_scan = t;
}

static void slot_watch(struct slot *s, uint32_t events)
{
	struct epoll_event ev = { .events = events };

	if (s->events == events)
		return;
	ev.data.u64 = ((uint64_t)s->generation << 32) | (uint64_t)(s - slots);
	epoll_ctl(epoll_fd, s->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev);
	s->events = events;
}

static void slot_close_fd(struct slot *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->events = 0;
	s->generation++;
	s->deadline = 0;
	s->rx_len = 0;
}

static struct conn_record *record_of(struct slot *s)
{
	return duration_mode() ? &res.records[s->conn_id] : NULL;
}

// The backend named NAME VERSION answered a request on s after latency_us.
static void slot_answered(struct slot *s, int backend, uint64_t latency_us)
{
	struct conn_record *r = record_of(s);

	res.backends[backend].count++;
	res.answers++;
	hist_add(latency_us);
	s->answers++;
	s->seen |= 1ull << backend;
	if (s->first_backend < 0)
		s->first_backend = backend;
	if (r) {
		r->seen |= 1ull << backend;
		r->answers++;
	}
}

// Ends the current connection of s; err is NULL on success.
static void slot_finish(struct slot *s, const char *err)
{
	int ei = err ? error_index(err) : -1;
	uint64_t now = now_us();

	slot_close_fd(s);
	if (err) {
		res.failed++;
		res.errors[ei].count++;
		if (res.n_failure_log < MAX_FAILURE_LOG) {
			struct failure_event *f = &res.failure_log[res.n_failure_log++];

			f->t_us = now - t_zero;
			f->conn = s->conn_id;
			f->error = ei;
		} else {
			res.failures_unlogged++;
		}
	} else {
		res.ok++;
	}
	if (__builtin_popcountll(s->seen) > 1)
		res.switched++;
	if (res.sequence)
		res.sequence[s->conn_id] = err ? -1 : (int16_t)s->first_backend;
	if (duration_mode()) {
		res.records[s->conn_id].error = ei;
		s->phase = PH_RETRY;
		set_next_at(s, now + (uint64_t)opt.interval_ms * 1000u);
	} else {
		s->phase = PH_FREE;
		free_slots[free_top++] = s - slots;
		active--;
	}
}

static void slot_fail_errno(struct slot *s, int err)
{
	slot_finish(s, errno_name(err));
}

static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

// The kernel may rewrite the destination, but the application must still see the target.
static void check_peer(struct slot *s)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	memset(&peer, 0, sizeof(peer));
	if (getpeername(s->fd, (struct sockaddr *)&peer, &len) < 0 || !same_endpoint(&peer, &opt.target))
		res.peer_mismatch++;
}

// Echo pattern: depends on the byte offset and the connection, so shifted or foreign bytes show.
static void fill_pattern(uint32_t seed, uint64_t off, unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = off + i;

		p[i] = (unsigned char)((x ^ (x >> 8) ^ (x >> 16) ^ seed) * 167u + 13u);
	}
}

// ---- HTTP --------------------------------------------------------------------

static void http_send_request(struct slot *s)
{
	uint64_t now = now_us();
	ssize_t n;

	// The last request of a connection asks the server to close first.
	s->close_requested = !duration_mode() &&
			     (opt.mode == MODE_HTTP || (long)s->answers + 1 >= opt.requests_per_conn);
	s->req_len = (size_t)snprintf(s->req, sizeof(s->req),
				      "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-loadgen\r\n%s\r\n",
				      opt.target_str, s->close_requested ? "Connection: close\r\n" : "");
	s->req_off = 0;
	s->t_request = now;
	s->phase = PH_REQUEST;
	if (opt.mode != MODE_HTTP)
		set_deadline(s, now + (uint64_t)opt.timeout_ms * 1000u);
	n = send(s->fd, s->req, s->req_len, MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN) {
		slot_fail_errno(s, errno);
		return;
	}
	if (n > 0)
		s->req_off = (size_t)n;
	slot_watch(s, s->req_off < s->req_len ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

// Finds "key":"value" in a flat JSON object; returns the value's length or -1.
static int json_string_field(const char *json, size_t len, const char *key, const char **value)
{
	char pat[32];
	size_t pl = (size_t)snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *end = json + len;

	for (const char *p = json; p + pl <= end; p++) {
		const char *v;

		if (memcmp(p, pat, pl) != 0)
			continue;
		v = p + pl;
		while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
			v++;
		if (v >= end || *v != ':')
			continue;
		v++;
		while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
			v++;
		if (v >= end || *v != '"')
			continue;
		v++;
		for (const char *q = v; q < end; q++) {
			if (*q == '\\') {
				q++;
				continue;
			}
			if (*q == '"') {
				*value = v;
				return (int)(q - v);
			}
		}
		return -1;
	}
	return -1;
}

// Returns the length of a complete response at the start of rx, 0 if incomplete, -1 if malformed.
static long http_parse_response(struct slot *s, int *status, bool *server_close, int *backend)
{
	const char *p = s->rx, *end = s->rx + s->rx_len, *hdr_end = NULL, *h;
	long content_length = -1;
	const char *name, *version;
	int name_len, version_len;

	for (const char *q = p; q + 1 < end; q++) {
		if (q[0] == '\n' && q[1] == '\n') {
			hdr_end = q + 2;
			break;
		}
		if (q + 3 < end && q[0] == '\r' && q[1] == '\n' && q[2] == '\r' && q[3] == '\n') {
			hdr_end = q + 4;
			break;
		}
	}
	if (!hdr_end)
		return 0;
	if (s->rx_len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
		return -1;
	*status = atoi(p + 9);
	*server_close = p[7] == '0';
	for (h = memchr(p, '\n', (size_t)(hdr_end - p)) + 1; h < hdr_end;) {
		const char *eol = memchr(h, '\n', (size_t)(hdr_end - h));
		const char *v;

		if (!eol)
			break;
		v = memchr(h, ':', (size_t)(eol - h));
		if (v) {
			v++;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			if (v - h > 15 && strncasecmp(h, "content-length:", 15) == 0)
				content_length = strtol(v, NULL, 10);
			else if (v - h > 11 && strncasecmp(h, "connection:", 11) == 0 &&
				 strncasecmp(v, "close", 5) == 0)
				*server_close = true;
		}
		h = eol + 1;
	}
	if (content_length < 0)
		return -1;     // fakesvc always sends one; anything else is not our backend
	if ((long)(end - hdr_end) < content_length)
		return 0;
	name_len = json_string_field(hdr_end, (size_t)content_length, "name", &name);
	version_len = json_string_field(hdr_end, (size_t)content_length, "version", &version);
	if (name_len < 0) {
		name = "?";
		name_len = 1;
	}
	if (version_len < 0) {
		version = "?";
		version_len = 1;
	}
	*backend = backend_index(name, (size_t)name_len, version, (size_t)version_len);
	return (long)(hdr_end - p) + content_length;
}

static void http_readable(struct slot *s)
{
	for (;;) {
		ssize_t n;
		long used;
		int status = 0, backend = 0;
		bool server_close = false;
		uint64_t now;

		if (s->rx_cap - s->rx_len == 0) {
			size_t cap = s->rx_cap ? s->rx_cap * 2 : 4096;

			if (cap > RX_MAX) {
				slot_finish(s, "EPROTO");
				return;
			}
			s->rx = realloc(s->rx, cap);
			if (!s->rx)
				fatal("out of memory");
			s->rx_cap = cap;
		}
		n = recv(s->fd, s->rx + s->rx_len, s->rx_cap - s->rx_len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (s->phase == PH_LINGER)
				slot_finish(s, NULL);
			else
				slot_fail_errno(s, errno);
			return;
		}
		if (n == 0) {
			slot_finish(s, s->phase == PH_LINGER ? NULL : "EOF");
			return;
		}
		if (s->phase == PH_LINGER) {
			s->rx_len = 0;
			continue;
		}
		if (s->phase != PH_REQUEST) {
			slot_finish(s, "EPROTO");       // bytes nobody asked for
			return;
		}
		s->rx_len += (size_t)n;
		used = http_parse_response(s, &status, &server_close, &backend);
		if (used == 0)
			continue;
		if (used < 0) {
			slot_finish(s, "EPROTO");
			return;
		}
		if (status != 200) {
			char name[32];

			snprintf(name, sizeof(name), "HTTP_%d", status);
			slot_finish(s, name);
			return;
		}
		now = now_us();
		slot_answered(s, backend, now - (opt.mode == MODE_HTTP ? s->t_start : s->t_request));
		memmove(s->rx, s->rx + used, s->rx_len - (size_t)used);
		s->rx_len -= (size_t)used;
		if (s->close_requested || server_close) {
			if (!s->close_requested && !duration_mode() && (long)s->answers < opt.requests_per_conn) {
				slot_finish(s, "EOF");  // server ended the connection early
				return;
			}
			if (duration_mode()) {
				slot_finish(s, "EOF");
				return;
			}
			s->phase = PH_LINGER;
			set_deadline(s, now + (uint64_t)opt.timeout_ms * 1000u);
			continue;
		}
		if (duration_mode()) {
			uint64_t next = s->t_request + (uint64_t)opt.interval_ms * 1000u;

			s->phase = PH_IDLE;
			s->deadline = 0;
			set_next_at(s, next > now ? next : now);
			slot_watch(s, EPOLLIN);
			continue;
		}
		http_send_request(s);
		return;
	}
}

// ---- TCP echo ----------------------------------------------------------------

static void echo_send(struct slot *s)
{
	unsigned char buf[IO_CHUNK];

	while (s->echo_sent < s->echo_goal) {
		size_t len = s->echo_goal - s->echo_sent < sizeof(buf) ? (size_t)(s->echo_goal - s->echo_sent) : sizeof(buf);
		ssize_t n;

		fill_pattern(s->conn_id, s->echo_sent, buf, len);
		n = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			slot_fail_errno(s, errno);
			return;
		}
		s->echo_sent += (uint64_t)n;
	}
	slot_watch(s, s->echo_sent < s->echo_goal ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void echo_start_request(struct slot *s, uint64_t bytes)
{
	uint64_t now = now_us();

	s->t_request = now;
	s->echo_goal = s->echo_sent + bytes;
	s->phase = PH_REQUEST;
	set_deadline(s, now + (uint64_t)opt.timeout_ms * 1000u);
	echo_send(s);
}

// All bytes of the current request came back: one answer from the greeting's backend.
static void echo_complete(struct slot *s)
{
	uint64_t now = now_us();

	uint64_t next = s->next_at;         // after the greeting: the staggered first request

	if (!duration_mode()) {
		slot_answered(s, s->greeted_backend, now - s->t_start);
		slot_finish(s, NULL);
		return;
	}
	if (s->phase == PH_REQUEST) {
		slot_answered(s, s->greeted_backend, now - s->t_request);
		next = s->t_request + (uint64_t)opt.interval_ms * 1000u;
	}
	s->phase = PH_IDLE;
	s->deadline = 0;
	set_next_at(s, next > now ? next : now);
}

static void tcp_readable(struct slot *s)
{
	unsigned char buf[IO_CHUNK], want[IO_CHUNK];

	for (;;) {
		ssize_t n = recv(s->fd, buf, sizeof(buf), 0);
		size_t off = 0;

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			slot_fail_errno(s, errno);
			return;
		}
		if (n == 0) {
			slot_finish(s, "EOF");
			return;
		}
		if (s->phase == PH_GREETING) {
			unsigned char *nl = memchr(buf, '\n', (size_t)n);
			size_t take = nl ? (size_t)(nl - buf) : (size_t)n;
			char *space;

			if (s->rx_len + take >= 256) {
				slot_finish(s, "EPROTO");
				return;
			}
			if (!s->rx) {
				s->rx = malloc(4096);
				if (!s->rx)
					fatal("out of memory");
				s->rx_cap = 4096;
			}
			memcpy(s->rx + s->rx_len, buf, take);
			s->rx_len += take;
			if (!nl)
				continue;
			off = take + 1;
			s->rx[s->rx_len] = '\0';
			// NAME VERSION: the version is the last word.
			space = strrchr(s->rx, ' ');
			if (!space || space == s->rx || space[1] == '\0') {
				slot_finish(s, "EPROTO");
				return;
			}
			s->greeted_backend = backend_index(s->rx, (size_t)(space - s->rx), space + 1, strlen(space + 1));
			s->seen |= 1ull << s->greeted_backend;
			if (s->first_backend < 0)
				s->first_backend = s->greeted_backend;
			if (duration_mode())
				res.records[s->conn_id].seen |= 1ull << s->greeted_backend;
			s->rx_len = 0;
			if (!duration_mode() && opt.bytes > 0) {
				echo_start_request(s, (uint64_t)opt.bytes);
				if (s->phase != PH_REQUEST)
					return;
			} else {
				echo_complete(s);
				if (s->phase == PH_FREE || s->phase == PH_RETRY)
					return;
			}
		}
		if ((size_t)n > off) {
			size_t len = (size_t)n - off;

			if (s->echo_checked + len > s->echo_sent) {
				slot_finish(s, "ECORRUPT");     // more bytes back than were sent
				return;
			}
			fill_pattern(s->conn_id, s->echo_checked, want, len);
			if (memcmp(buf + off, want, len) != 0) {
				slot_finish(s, "ECORRUPT");
				return;
			}
			s->echo_checked += len;
			// Progress restarts the clock: the timeout bounds a stall, not a long transfer.
			set_deadline(s, now_us() + (uint64_t)opt.timeout_ms * 1000u);
			if (s->phase == PH_REQUEST && s->echo_checked == s->echo_goal) {
				echo_complete(s);
				if (s->phase == PH_FREE || s->phase == PH_RETRY)
					return;
			}
		}
	}
}

// ---- UDP ---------------------------------------------------------------------

static void udp_send(struct slot *s)
{
	uint64_t now = now_us();
	ssize_t n;

	if (opt.bytes_set) {
		s->udp_len = (size_t)opt.bytes;
		fill_pattern(s->conn_id, s->answers, s->udp_payload, s->udp_len);
	} else {
		s->udp_len = (size_t)snprintf((char *)s->udp_payload, UDP_MAX_PAYLOAD, "loadgen %u %lu\n",
					      s->conn_id, (unsigned long)s->answers);
	}
	s->t_request = now;
	s->phase = PH_REQUEST;
	if (duration_mode())
		set_deadline(s, now + (uint64_t)opt.timeout_ms * 1000u);
	if (opt.mode == MODE_UDP_CONNECTED)
		n = send(s->fd, s->udp_payload, s->udp_len, 0);
	else
		n = sendto(s->fd, s->udp_payload, s->udp_len, 0, (struct sockaddr *)&opt.target, opt.target_len);
	if (n < 0)
		slot_fail_errno(s, errno);
}

static void udp_readable(struct slot *s)
{
	static unsigned char buf[IO_CHUNK];

	for (;;) {
		struct sockaddr_storage from;
		socklen_t from_len = sizeof(from);
		unsigned char *nl, *space;
		ssize_t n;
		int backend;
		uint64_t now;

		memset(&from, 0, sizeof(from));
		n = recvfrom(s->fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&from, &from_len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			slot_fail_errno(s, errno);     // ICMP unreachable arrives here (IP_RECVERR)
			return;
		}
		if (s->phase != PH_REQUEST)
			continue;                       // late answer to nothing outstanding
		if (!same_endpoint(&from, &opt.target))
			res.peer_mismatch++;
		nl = memchr(buf, '\n', (size_t)n);
		if (!nl) {
			slot_finish(s, "EPROTO");
			return;
		}
		*nl = '\0';
		space = (unsigned char *)strrchr((char *)buf, ' ');
		if (!space || space == buf) {
			slot_finish(s, "EPROTO");
			return;
		}
		if ((size_t)(buf + n - (nl + 1)) != s->udp_len || memcmp(nl + 1, s->udp_payload, s->udp_len) != 0) {
			slot_finish(s, "ECORRUPT");
			return;
		}
		backend = backend_index((char *)buf, (size_t)(space - buf), (char *)space + 1,
					(size_t)(nl - space - 1));
		now = now_us();
		slot_answered(s, backend, now - (duration_mode() ? s->t_request : s->t_start));
		if (!duration_mode()) {
			slot_finish(s, NULL);
			return;
		}
		s->phase = PH_IDLE;
		s->deadline = 0;
		set_next_at(s, s->t_request + (uint64_t)opt.interval_ms * 1000u > now ?
			       s->t_request + (uint64_t)opt.interval_ms * 1000u : now);
	}
}

// ---- driving connections -------------------------------------------------------

static void slot_start(struct slot *s, uint64_t first_request_at)
{
	uint64_t now = now_us();
	int type = udp_mode() ? SOCK_DGRAM : SOCK_STREAM;

	s->conn_id = next_conn_id++;
	s->t_start = now;
	s->answers = 0;
	s->seen = 0;
	s->first_backend = -1;
	s->greeted_backend = 0;
	s->rx_len = 0;
	s->echo_sent = s->echo_checked = s->echo_goal = 0;
	s->events = 0;
	s->phase = PH_CONNECTING;
	res.connections++;
	if (duration_mode()) {
		if (res.n_records == res.cap_records) {
			res.cap_records = res.cap_records ? res.cap_records * 2 : 256;
			res.records = realloc(res.records, res.cap_records * sizeof(*res.records));
			if (!res.records)
				fatal("out of memory");
		}
		res.records[res.n_records++] = (struct conn_record){ .error = -1 };
	}
	set_deadline(s, now + (uint64_t)opt.timeout_ms * 1000u);
	s->fd = socket(opt.target.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		slot_fail_errno(s, errno);
		return;
	}
	if (opt.source_port) {
		struct sockaddr_storage local = { .ss_family = opt.target.ss_family };
		long port = opt.source_port + res.connections - 1;
		if (port > 65535)
			fatal("--source-port %ld: connection %ld would need port %ld", opt.source_port, res.connections, port);
		if (local.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&local)->sin6_port = htons((uint16_t)port);
		else
			((struct sockaddr_in *)&local)->sin_port = htons((uint16_t)port);
		if (bind(s->fd, (struct sockaddr *)&local, opt.target_len) < 0) {
			slot_fail_errno(s, errno);
			return;
		}
	}
	if (udp_mode()) {
		int one = 1;

		// Without IP_RECVERR an unconnected socket never hears of a refused port.
		if (opt.target.ss_family == AF_INET6)
			setsockopt(s->fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one));
		else
			setsockopt(s->fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one));
		if (!s->udp_payload) {
			s->udp_payload = malloc(UDP_MAX_PAYLOAD + 1);
			if (!s->udp_payload)
				fatal("out of memory");
		}
		if (opt.mode == MODE_UDP_CONNECTED) {
			if (connect(s->fd, (struct sockaddr *)&opt.target, opt.target_len) < 0) {
				slot_fail_errno(s, errno);
				return;
			}
			check_peer(s);
		}
		slot_watch(s, EPOLLIN);
		if (duration_mode()) {
			s->phase = PH_IDLE;
			s->deadline = 0;
			set_next_at(s, first_request_at > now ? first_request_at : now);
		} else {
			udp_send(s);
		}
		return;
	}
	if (connect(s->fd, (struct sockaddr *)&opt.target, opt.target_len) < 0 && errno != EINPROGRESS) {
		slot_fail_errno(s, errno);
		return;
	}
	s->next_at = first_request_at;
	slot_watch(s, EPOLLOUT);
}

static void slot_connected(struct slot *s)
{
	uint64_t now = now_us();

	check_peer(s);
	if (opt.mode == MODE_TCP) {
		int one = 1;

		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->phase = PH_GREETING;
		slot_watch(s, EPOLLIN);
		return;
	}
	if (duration_mode()) {
		s->phase = PH_IDLE;
		s->deadline = 0;
		set_next_at(s, s->next_at > now ? s->next_at : now);
		slot_watch(s, EPOLLIN);
		return;
	}
	http_send_request(s);
}

static void slot_event(struct slot *s, uint32_t events)
{
	if (s->phase == PH_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			slot_fail_errno(s, err);
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		slot_connected(s);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (udp_mode())
			udp_readable(s);
		else if (opt.mode == MODE_TCP)
			tcp_readable(s);
		else
			http_readable(s);
	}
	if (s->fd < 0 || !(events & EPOLLOUT))
		return;
	if (opt.mode == MODE_TCP && s->phase == PH_REQUEST) {
		echo_send(s);
	} else if (s->phase == PH_REQUEST && s->req_off < s->req_len) {
		ssize_t n = send(s->fd, s->req + s->req_off, s->req_len - s->req_off, MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN) {
			slot_fail_errno(s, errno);
			return;
		}
		if (n > 0)
			s->req_off += (size_t)n;
		slot_watch(s, s->req_off < s->req_len ? EPOLLIN | EPOLLOUT : EPOLLIN);
	}
}

// Fires due timers: stalled connections fail ETIMEDOUT; --duration slots send or reconnect.
static void scan_timers(uint64_t now)
{
	last_scan = now;
	next_scan = UINT64_MAX;
	for (long i = 0; i < opt.c; i++) {
		struct slot *s = &slots[i];

		if (s->phase == PH_FREE)
			continue;
		if (s->deadline && now >= s->deadline) {
			slot_finish(s, s->phase == PH_LINGER ? NULL : "ETIMEDOUT");
			if (s->phase == PH_FREE)
				continue;
		}
		if (s->phase == PH_IDLE && now >= s->next_at) {
			if (udp_mode())
				udp_send(s);
			else if (opt.mode == MODE_TCP)
				echo_start_request(s, opt.bytes_set && opt.bytes > 0 ? (uint64_t)opt.bytes : DURATION_MSG);
			else
				http_send_request(s);
		} else if (s->phase == PH_RETRY && now >= s->next_at && !stopping) {
			slot_start(s, now);
		}
		if (s->deadline && s->deadline < next_scan)
			next_scan = s->deadline;
		if ((s->phase == PH_IDLE || s->phase == PH_RETRY) && s->next_at < next_scan)
			next_scan = s->next_at;
	}
}

static void handle_events(int timeout_ms)
{
	struct epoll_event events[512];
	int n = epoll_wait(epoll_fd, events, 512, timeout_ms);

	if (n < 0) {
		if (errno == EINTR)
			return;
		fatal("epoll_wait: %s", strerror(errno));
	}
	for (int i = 0; i < n; i++) {
		uint64_t tag = events[i].data.u64;
		struct slot *s;

		if (tag == SIGNAL_TAG) {
			struct signalfd_siginfo si;

			while (read(signal_fd, &si, sizeof(si)) > 0)
				;
			stopping = true;
			res.interrupted = true;
			continue;
		}
		s = &slots[(uint32_t)tag];
		if ((uint32_t)(tag >> 32) != s->generation || s->fd < 0)
			continue;
		slot_event(s, events[i].events);
	}
}

// Scans run at most once a millisecond: with thousands of staggered timers one scan serves many.
static uint64_t scan_due(void)
{
	return next_scan > last_scan + 1000 ? next_scan : last_scan + 1000;
}

static int wait_ms(uint64_t now, uint64_t until)
{
	uint64_t t = scan_due() < until ? scan_due() : until;

	if (t <= now)
		return 0;
	t = (t - now + 999) / 1000;
	return t > 1000 ? 1000 : (int)t;
}

static void run_count(void)
{
	free_slots = malloc((size_t)opt.c * sizeof(long));
	if (!free_slots)
		fatal("out of memory");
	for (long i = opt.c - 1; i >= 0; i--)
		free_slots[free_top++] = i;
	while (!stopping) {
		uint64_t now;

		while (free_top > 0 && (long)next_conn_id < opt.n && !stopping) {
			active++;
			slot_start(&slots[free_slots[--free_top]], 0);
		}
		if (active == 0)
			break;
		now = now_us();
		handle_events(wait_ms(now, UINT64_MAX));
		now = now_us();
		if (now >= scan_due())
			scan_timers(now);
	}
}

static void run_duration(void)
{
	uint64_t end = t_zero + (uint64_t)(opt.duration_s * 1e6);
	uint64_t interval = (uint64_t)opt.interval_ms * 1000u;

	// Spread the first requests over one interval so load is even.
	for (long i = 0; i < opt.c && !stopping; i++)
		slot_start(&slots[i], t_zero + interval * (uint64_t)i / (uint64_t)opt.c);
	for (;;) {
		uint64_t now = now_us();

		if (now >= end || stopping)
			break;
		handle_events(wait_ms(now, end));
		now = now_us();
		if (now >= scan_due())
			scan_timers(now);
	}
	// Connections still open at the end succeeded; a request in flight is not a failure.
	for (long i = 0; i < opt.c; i++) {
		struct slot *s = &slots[i];

		if (s->fd >= 0 && s->phase != PH_RETRY) {
			slot_close_fd(s);
			res.ok++;
			if (__builtin_popcountll(s->seen) > 1)
				res.switched++;
		}
	}
}

// ---- output -------------------------------------------------------------------

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

// Versions summed across names: the weight split tests compare versions.
static int version_totals(const char **names, uint64_t *counts)
{
	int n = 0;

	for (int i = 0; i < res.n_backends; i++) {
		int j;

		for (j = 0; j < n; j++)
			if (strcmp(names[j], res.backends[i].version) == 0)
				break;
		if (j == n) {
			names[n] = res.backends[i].version;
			counts[n++] = 0;
		}
		counts[j] += res.backends[i].count;
	}
	return n;
}

static void print_json(void)
{
	const char *vnames[MAX_BACKENDS];
	uint64_t vcounts[MAX_BACKENDS];
	int nv = version_totals(vnames, vcounts);
	double secs = (double)res.elapsed_us / 1e6;

	printf("{\"target\":");
	json_string(opt.target_str);
	printf(",\"mode\":\"%s\",\"connections\":%lu,\"ok\":%lu,\"failed\":%lu,\"requests\":%lu",
	       mode_names[opt.mode], (unsigned long)res.connections, (unsigned long)res.ok,
	       (unsigned long)res.failed, (unsigned long)res.answers);
	printf(",\"backends\":[");
	for (int i = 0; i < res.n_backends; i++) {
		printf("%s{\"name\":", i ? "," : "");
		json_string(res.backends[i].name);
		printf(",\"version\":");
		json_string(res.backends[i].version);
		printf(",\"count\":%lu}", (unsigned long)res.backends[i].count);
	}
	printf("],\"versions\":{");
	for (int i = 0; i < nv; i++) {
		printf("%s", i ? "," : "");
		json_string(vnames[i]);
		printf(":%lu", (unsigned long)vcounts[i]);
	}
	printf("},\"errors\":{");
	for (int i = 0, k = 0; i < res.n_errors; i++) {
		if (!res.errors[i].count)
			continue;
		printf("%s", k++ ? "," : "");
		json_string(res.errors[i].name);
		printf(":%lu", (unsigned long)res.errors[i].count);
	}
	printf("},\"latency_us\":{\"p50\":%lu,\"p90\":%lu,\"p99\":%lu,\"max\":%lu}",
	       (unsigned long)hist_percentile(50), (unsigned long)hist_percentile(90),
	       (unsigned long)hist_percentile(99), (unsigned long)hist.max);
	printf(",\"peer_mismatch\":%lu,\"switched\":%lu", (unsigned long)res.peer_mismatch,
	       (unsigned long)res.switched);
	printf(",\"elapsed_ms\":%.1f,\"conn_per_s\":%.0f,\"req_per_s\":%.0f,\"interrupted\":%s",
	       (double)res.elapsed_us / 1000.0, secs > 0 ? (double)res.connections / secs : 0.0,
	       secs > 0 ? (double)res.answers / secs : 0.0, res.interrupted ? "true" : "false");
	if (res.sequence) {
		printf(",\"sequence\":[");
		for (uint32_t i = 0; i < next_conn_id; i++) {
			printf("%s", i ? "," : "");
			if (res.sequence[i] < 0)
				printf("null");
			else
				json_string(res.backends[res.sequence[i]].version);
		}
		printf("]");
	}
	if (duration_mode()) {
		printf(",\"duration_s\":%g,\"interval_ms\":%ld,\"per_connection\":[", opt.duration_s, opt.interval_ms);
		for (size_t i = 0; i < res.n_records; i++) {
			struct conn_record *r = &res.records[i];
			int k = 0;

			printf("%s{\"id\":%zu,\"versions\":[", i ? "," : "", i);
			for (int b = 0; b < res.n_backends; b++)
				if (r->seen & (1ull << b)) {
					printf("%s", k++ ? "," : "");
					json_string(res.backends[b].version);
				}
			printf("],\"names\":[");
			k = 0;
			for (int b = 0; b < res.n_backends; b++)
				if (r->seen & (1ull << b)) {
					printf("%s", k++ ? "," : "");
					json_string(res.backends[b].name);
				}
			printf("],\"requests\":%lu,\"error\":", (unsigned long)r->answers);
			if (r->error < 0)
				printf("null}");
			else {
				json_string(res.errors[r->error].name);
				printf("}");
			}
		}
		printf("],\"failure_log\":[");
		for (size_t i = 0; i < res.n_failure_log; i++) {
			printf("%s{\"t_ms\":%.1f,\"conn\":%u,\"error\":", i ? "," : "",
			       (double)res.failure_log[i].t_us / 1000.0, res.failure_log[i].conn);
			json_string(res.errors[res.failure_log[i].error].name);
			printf("}");
		}
		printf("],\"failures_unlogged\":%lu", (unsigned long)res.failures_unlogged);
	}
	printf("}\n");
}

static void print_text(void)
{
	double secs = (double)res.elapsed_us / 1e6;
	int k = 0;

	printf("target %s mode %s: %lu connections, %lu ok, %lu failed\n", opt.target_str,
	       mode_names[opt.mode], (unsigned long)res.connections, (unsigned long)res.ok,
	       (unsigned long)res.failed);
	for (int i = 0; i < res.n_backends; i++) {
		char who[200];

		snprintf(who, sizeof(who), "%s %s", res.backends[i].name, res.backends[i].version);
		printf("  %-30s %8lu  %5.1f%%\n", who, (unsigned long)res.backends[i].count,
		       res.answers ? 100.0 * (double)res.backends[i].count / (double)res.answers : 0.0);
	}
	if (res.failed) {
		printf("  failures:");
		for (int i = 0; i < res.n_errors; i++)
			if (res.errors[i].count)
				printf("%s %s %lu", k++ ? "," : "", res.errors[i].name, (unsigned long)res.errors[i].count);
		printf("\n");
	}
	printf("  latency_us: p50 %lu p90 %lu p99 %lu max %lu\n", (unsigned long)hist_percentile(50),
	       (unsigned long)hist_percentile(90), (unsigned long)hist_percentile(99), (unsigned long)hist.max);
	printf("  requests %lu in %.3f s: %.0f conn/s, %.0f req/s; peer_mismatch %lu, switched %lu%s\n",
	       (unsigned long)res.answers, secs, secs > 0 ? (double)res.connections / secs : 0.0,
	       secs > 0 ? (double)res.answers / secs : 0.0, (unsigned long)res.peer_mismatch,
	       (unsigned long)res.switched, res.interrupted ? " (interrupted)" : "");
	if (res.sequence) {
		printf("  sequence:");
		for (uint32_t i = 0; i < next_conn_id; i++)
			printf(" %s", res.sequence[i] < 0 ? "-" : res.backends[res.sequence[i]].version);
		printf("\n");
	}
	if (duration_mode()) {
		for (size_t i = 0; i < res.n_records && i < 64; i++) {
			struct conn_record *r = &res.records[i];

			printf("  connection %zu:", i);
			for (int b = 0; b < res.n_backends; b++)
				if (r->seen & (1ull << b))
					printf(" %s", res.backends[b].version);
			printf(" (%lu requests)%s%s\n", (unsigned long)r->answers, r->error >= 0 ? " failed " : "",
			       r->error >= 0 ? res.errors[r->error].name : "");
		}
		if (res.n_records > 64)
			printf("  ... %zu more connections (see -o json)\n", res.n_records - 64);
		for (size_t i = 0; i < res.n_failure_log; i++)
			printf("  failure at %.3f s on connection %u: %s\n", (double)res.failure_log[i].t_us / 1e6,
			       res.failure_log[i].conn, res.errors[res.failure_log[i].error].name);
	}
}

// ---- command line -------------------------------------------------------------

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: loadgen --target ADDR:PORT [--mode http|keepalive|tcp|udp|udp-connected] [-n N] [-c C]\n"
		"               [--requests-per-conn K] [--netns NAME] [--cgroup PATH] [--timeout MS] [--sequence]\n"
		"               [--duration SEC --interval MS] [--bytes B] [--source-port FIRST] [-o json|text]\n");
	exit(2);
}

static long parse_long(const char *what, const char *text, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > max)
		usage_error("%s: expected an integer from %ld to %ld, got '%s'", what, min, max, text);
	return v;
}

static void parse_target(const char *text)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port_text;
	long port;

	memset(&opt.target, 0, sizeof(opt.target));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&opt.target;

		if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host))
			usage_error("--target: bad address '%s' (expected [IPv6]:PORT)", text);
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		port_text = close + 2;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			usage_error("--target: bad IPv6 address '%s'", host);
		port = parse_long("--target port", port_text, 1, 65535);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		opt.target_len = sizeof(*s6);
		snprintf(opt.target_str, sizeof(opt.target_str), "[%s]:%ld", host, port);
	} else {
		const char *colon = strrchr(text, ':');
		struct sockaddr_in *s4 = (struct sockaddr_in *)&opt.target;

		if (!colon || (size_t)(colon - text) >= sizeof(host))
			usage_error("--target: bad address '%s' (expected ADDR:PORT, IPv6 as [ADDR]:PORT)", text);
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			usage_error("--target: bad IPv4 address '%s' (IPv6 goes in brackets: [::1]:PORT)", host);
		port = parse_long("--target port", colon + 1, 1, 65535);
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		opt.target_len = sizeof(*s4);
		snprintf(opt.target_str, sizeof(opt.target_str), "%s:%ld", host, port);
	}
}

enum opt_id {
	OPT_TARGET = 256, OPT_MODE, OPT_RPC, OPT_NETNS, OPT_CGROUP, OPT_TIMEOUT, OPT_SEQUENCE,
	OPT_DURATION, OPT_INTERVAL, OPT_BYTES, OPT_SOURCE_PORT, OPT_HELP,
};

static const struct option options[] = {
	{ "target",            required_argument, NULL, OPT_TARGET },
	{ "mode",              required_argument, NULL, OPT_MODE },
	{ "requests-per-conn", required_argument, NULL, OPT_RPC },
	{ "netns",             required_argument, NULL, OPT_NETNS },
	{ "cgroup",            required_argument, NULL, OPT_CGROUP },
	{ "timeout",           required_argument, NULL, OPT_TIMEOUT },
	{ "sequence",          no_argument,       NULL, OPT_SEQUENCE },
	{ "duration",          required_argument, NULL, OPT_DURATION },
	{ "interval",          required_argument, NULL, OPT_INTERVAL },
	{ "bytes",             required_argument, NULL, OPT_BYTES },
	{ "source-port",       required_argument, NULL, OPT_SOURCE_PORT },
	{ "output",            required_argument, NULL, 'o' },
	{ "help",              no_argument,       NULL, OPT_HELP },
	{ 0 },
};

static void parse_args(int argc, char **argv)
{
	bool n_set = false, rpc_set = false;
	int o;

	opterr = 0;
	while ((o = getopt_long(argc, argv, ":n:c:o:", options, NULL)) != -1) {
		switch (o) {
		case OPT_TARGET:
			opt.target_text = optarg;
			break;
		case OPT_MODE: {
			size_t i;

			for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
				if (strcmp(optarg, mode_names[i]) == 0)
					break;
			if (i == sizeof(mode_names) / sizeof(mode_names[0]))
				usage_error("--mode: unknown mode '%s' (http, keepalive, tcp, udp, udp-connected)", optarg);
			opt.mode = (enum mode)i;
			break;
		}
		case 'n':
			opt.n = parse_long("-n", optarg, 1, 100000000);
			n_set = true;
			break;
		case 'c':
			opt.c = parse_long("-c", optarg, 1, 200000);
			break;
		case OPT_RPC:
			opt.requests_per_conn = parse_long("--requests-per-conn", optarg, 1, 100000000);
			rpc_set = true;
			break;
		case OPT_NETNS:
			opt.netns = optarg;
			break;
		case OPT_CGROUP:
			opt.cgroup = optarg;
			break;
		case OPT_TIMEOUT:
			opt.timeout_ms = parse_long("--timeout", optarg, 1, 86400000);
			break;
		case OPT_SEQUENCE:
			opt.sequence = true;
			break;
		case OPT_DURATION: {
			char *end;

			errno = 0;
			opt.duration_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(opt.duration_s > 0) || opt.duration_s > 86400 * 7)
				usage_error("--duration: expected seconds > 0, got '%s'", optarg);
			break;
		}
		case OPT_INTERVAL:
			opt.interval_ms = parse_long("--interval", optarg, 1, 3600000);
			break;
		case OPT_BYTES:
			opt.bytes = parse_long("--bytes", optarg, 0, 1L << 40);
			opt.bytes_set = true;
			break;
		case OPT_SOURCE_PORT:
			opt.source_port = parse_long("--source-port", optarg, 1, 65535);
			break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				opt.json = true;
			else if (strcmp(optarg, "text") == 0)
				opt.json = false;
			else
				usage_error("-o: unknown output '%s' (json or text)", optarg);
			break;
		case OPT_HELP:
			printf("usage: loadgen --target ADDR:PORT [--mode http|keepalive|tcp|udp|udp-connected] [-n N] [-c C]\n"
			       "               [--requests-per-conn K] [--netns NAME] [--cgroup PATH] [--timeout MS] [--sequence]\n"
			       "               [--duration SEC --interval MS] [--bytes B] [--source-port FIRST] [-o json|text]\n");
			exit(0);
		case ':':
			usage_error("option '%s' needs a value", argv[optind - 1]);
			break;
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!opt.target_text)
		usage_error("--target is required");
	parse_target(opt.target_text);
	if (opt.interval_ms && !duration_mode())
		usage_error("--interval needs --duration");
	if (duration_mode()) {
		if (n_set)
			usage_error("-n and --duration exclude each other");
		if (!opt.interval_ms)
			opt.interval_ms = 100;
		// A long-lived HTTP connection is a keep-alive one.
		if (opt.mode == MODE_HTTP)
			opt.mode = MODE_KEEPALIVE;
	}
	if (opt.bytes_set && opt.mode != MODE_TCP && !udp_mode())
		usage_error("--bytes applies to --mode tcp, udp and udp-connected");
	if (opt.bytes_set && udp_mode() && opt.bytes > UDP_MAX_PAYLOAD)
		usage_error("--bytes: a UDP payload holds at most %d bytes, got %ld", UDP_MAX_PAYLOAD, opt.bytes);
	if (rpc_set && (opt.mode != MODE_KEEPALIVE || duration_mode()))
		usage_error("--requests-per-conn applies to --mode keepalive without --duration");
	if (opt.sequence && duration_mode())
		usage_error("--sequence applies to counted runs (-n), not --duration");
	if (!duration_mode() && opt.c > opt.n)
		opt.c = opt.n;
}

// Joins the network namespace and cgroup before any socket exists, so BPF hooks see us.
static void enter_netns_and_cgroup(void)
{
	if (opt.netns) {
		char path[4096];
		int fd;

		if (strchr(opt.netns, '/'))
			snprintf(path, sizeof(path), "%s", opt.netns);
		else
			snprintf(path, sizeof(path), "/var/run/netns/%s", opt.netns);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fatal("--netns %s: cannot open %s: %s", opt.netns, path, strerror(errno));
		if (setns(fd, CLONE_NEWNET) < 0)
			fatal("--netns %s: setns: %s", opt.netns, strerror(errno));
		close(fd);
	}
	if (opt.cgroup) {
		char path[4096], pid[32];
		int fd, len;

		snprintf(path, sizeof(path), "%s/cgroup.procs", opt.cgroup);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			fatal("--cgroup %s: cannot open %s: %s", opt.cgroup, path, strerror(errno));
		len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (write(fd, pid, (size_t)len) != len)
			fatal("--cgroup %s: cannot join: %s", opt.cgroup, strerror(errno));
		close(fd);
	}
}

static void raise_nofile(void)
{
	struct rlimit rl = { 1 << 20, 1 << 20 };

	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = SIGNAL_TAG };
	sigset_t mask;

	parse_args(argc, argv);
	enter_netns_and_cgroup();
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (epoll_fd < 0 || signal_fd < 0)
		fatal("epoll/signalfd: %s", strerror(errno));
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &ev);

	slots = calloc((size_t)opt.c, sizeof(*slots));
	if (!slots)
		fatal("out of memory");
	for (long i = 0; i < opt.c; i++)
		slots[i].fd = -1;
	if (opt.sequence) {
		res.sequence = malloc((size_t)opt.n * sizeof(*res.sequence));
		if (!res.sequence)
			fatal("out of memory");
		memset(res.sequence, 0xff, (size_t)opt.n * sizeof(*res.sequence));   // -1: not finished
	}

	t_zero = now_us();
	if (duration_mode())
		run_duration();
	else
		run_count();
	res.elapsed_us = now_us() - t_zero;

	// Interrupted before the end: connections still open are abandoned, not counted.
	for (long i = 0; i < opt.c; i++)
		if (slots[i].fd >= 0)
			close(slots[i].fd);
	if (opt.json)
		print_json();
	else
		print_text();
	return 0;
}
