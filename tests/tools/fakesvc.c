// fakesvc: the test backend, in the spirit of the Istio labs' fake-service.
// One process answers HTTP (JSON naming itself), TCP (greeting then echo) and
// UDP (greeting plus the datagram) on any number of listeners, so a client
// can tell which service version answered each connection.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LISTENERS   64
#define HEADER_MAX      16384          // a request head larger than this is refused
#define OUT_HIGH        (256 * 1024)   // stop reading while this much output is unsent
#define IO_CHUNK        65536
#define UDP_MAX_PAYLOAD 65507

enum kind { KIND_HTTP, KIND_TCP, KIND_UDP };
static const char *kind_names[] = { "http", "tcp", "udp" };

enum obj_type { OBJ_SIGNAL, OBJ_LISTENER, OBJ_CONN };

struct listener {
	enum obj_type obj;             // first field: epoll data points at it
	enum kind kind;
	int fd;
	int family;
	const char *spec;              // as given on the command line
	char bound[INET6_ADDRSTRLEN + 8];
};

struct conn {
	enum obj_type obj;
	enum kind kind;
	int fd;
	uint32_t events;               // current epoll interest
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap;
	size_t body_left;              // request body bytes still to skip
	bool close_after_flush;        // last response said Connection: close
	bool draining;                 // FIN sent; discard input until the peer closes
	bool peer_closed;
	char local_ip[INET6_ADDRSTRLEN];
};

static struct {
	const char *name;
	const char *version;
	const char *message;
	const char *pidfile;
	const char *ready_file;
	struct listener listeners[MAX_LISTENERS];
	int n_listeners;
} svc;

static int epoll_fd = -1;
static int spare_fd = -1;              // released on EMFILE so a pending accept can be refused cleanly
static char greeting[512];
static size_t greeting_len;
static char json_name[1024], json_version[512], json_message[4096];

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fakesvc: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fakesvc: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: fakesvc --name NAME --version VER [--message MSG] [--http [ADDR:]PORT]...\n"
		"               [--tcp [ADDR:]PORT]... [--udp [ADDR:]PORT]... [--pidfile FILE] [--ready-file FILE]\n");
	exit(2);
}

// Writes s as the inside of a JSON string; never writes more than cap-1 bytes.
static size_t json_escape(char *dst, size_t cap, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char tmp[8];
		size_t n;

		if (ch == '"' || ch == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)ch;
			n = 2;
		} else if (ch < 0x20) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
		} else {
			tmp[0] = (char)ch;
			n = 1;
		}
		if (o + n >= cap)
			break;
		memcpy(dst + o, tmp, n);
		o += n;
	}
	dst[o] = '\0';
	return o;
}

// Parses [ADDR:]PORT, ADDR being IPv4 or [IPv6]; no ADDR means every address.
static void parse_listen_spec(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2] = "";
	const char *port_text = spec;
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host))
			usage_error("bad listen address '%s' (expected [IPv6]:PORT)", spec);
		memcpy(host, spec + 1, (size_t)(close - spec - 1));
		host[close - spec - 1] = '\0';
		port_text = close + 2;
	} else if (strchr(spec, ':')) {
		const char *colon = strrchr(spec, ':');

		if ((size_t)(colon - spec) >= sizeof(host))
			usage_error("bad listen address '%s'", spec);
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port_text = colon + 1;
	}
	errno = 0;
	port = strtol(port_text, &end, 10);
	if (errno || end == port_text || *end || port < 0 || port > 65535)
		usage_error("bad port in '%s' (expected 0-65535)", spec);

	if (host[0] == '\0') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
	} else if (spec[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			usage_error("bad IPv6 address '%s' in '%s'", host, spec);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			usage_error("bad IPv4 address '%s' in '%s' (IPv6 goes in brackets: [::1]:PORT)", host, spec);
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
	}
}

static void format_addr(const struct sockaddr_storage *ss, char *ip, size_t ip_len, uint16_t *port)
{
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		// A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; show them as IPv4.
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, (socklen_t)ip_len);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)ip_len);
		if (port)
			*port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)ip_len);
		if (port)
			*port = ntohs(s4->sin_port);
	}
}

static void epoll_add(int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl add: %s", strerror(errno));
}

static void open_listener(struct listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, zero = 0;
	int type = l->kind == KIND_UDP ? SOCK_DGRAM : SOCK_STREAM;
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;

	parse_listen_spec(l->spec, &ss, &len);
	l->fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0 && ss.ss_family == AF_INET6 && errno == EAFNOSUPPORT &&
	    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr)) {
		// No IPv6 in this kernel: "all addresses" means all IPv4 addresses.
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		uint16_t p = ((struct sockaddr_in6 *)&ss)->sin6_port;

		memset(&ss, 0, sizeof(ss));
		s4->sin_family = AF_INET;
		s4->sin_port = p;
		len = sizeof(*s4);
		l->fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (l->fd < 0)
		die("%s listener %s: socket: %s", kind_names[l->kind], l->spec, strerror(errno));
	l->family = ss.ss_family;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (l->kind == KIND_UDP) {
		// Replies must leave from the address the datagram was sent to.
		if (ss.ss_family == AF_INET6)
			setsockopt(l->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
		else
			setsockopt(l->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	}
	if (bind(l->fd, (struct sockaddr *)&ss, len) < 0)
		die("%s listener %s: bind: %s", kind_names[l->kind], l->spec, strerror(errno));
	if (l->kind != KIND_UDP && listen(l->fd, 65535) < 0)
		die("%s listener %s: listen: %s", kind_names[l->kind], l->spec, strerror(errno));

	len = sizeof(ss);
	getsockname(l->fd, (struct sockaddr *)&ss, &len);
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(l->bound, sizeof(l->bound), "[%s]:%u", ip, port);
	} else {
		format_addr(&ss, ip, sizeof(ip), &port);
		snprintf(l->bound, sizeof(l->bound), "%s:%u", ip, port);
	}
	l->obj = OBJ_LISTENER;
	epoll_add(l->fd, EPOLLIN, l);
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

// Creates FILE with CONTENT atomically, so a waiting test never reads it half-written.
static void write_file_atomic(const char *path, const char *content)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	f = fopen(tmp, "w");
	if (!f)
		die("cannot write %s: %s", tmp, strerror(errno));
	fputs(content, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("cannot write %s: %s", path, strerror(errno));
}

static void conn_free(struct conn *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static void out_append(struct conn *c, const void *data, size_t len)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		if (c->out_len + len > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 1024;
			char *p;

			while (cap < c->out_len + len)
				cap *= 2;
			p = realloc(c->out, cap);
			if (!p)
				die("out of memory");
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

static size_t out_pending(const struct conn *c)
{
	return c->out_len - c->out_off;
}

// Writes pending output; returns -1 when the connection is finished or broken.
static int conn_flush(struct conn *c)
{
	while (out_pending(c) > 0) {
		ssize_t n = send(c->fd, c->out + c->out_off, out_pending(c), MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	if (c->out_cap > OUT_HIGH) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	if (c->peer_closed)
		return -1;
	if (c->close_after_flush && !c->draining) {
		// Half-close and wait for the peer's FIN: a close() with unread input would send RST.
		shutdown(c->fd, SHUT_WR);
		c->draining = true;
	}
	return 0;
}

static void conn_update_interest(struct conn *c)
{
	uint32_t want = 0;
	struct epoll_event ev;

	if (!c->peer_closed && out_pending(c) < OUT_HIGH)
		want |= EPOLLIN;
	if (out_pending(c) > 0)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ev.events = want;
	ev.data.ptr = c;
	epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
	c->events = want;
}

static void http_respond(struct conn *c, int code, const char *uri, size_t uri_len,
			 bool head, bool keep_alive)
{
	static char body[6 * HEADER_MAX + 8192];
	static char uri_json[6 * HEADER_MAX + 1];
	char head_buf[512];
	const char *reason = code == 200 ? "OK" : code == 405 ? "Method Not Allowed" : "Bad Request";
	int body_len, head_len;

	if (c->local_ip[0] == '\0') {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0)
			format_addr(&ss, c->local_ip, sizeof(c->local_ip), NULL);
	}
	json_escape(uri_json, sizeof(uri_json), uri, uri_len);
	body_len = snprintf(body, sizeof(body),
			    "{\"name\":\"%s\",\"version\":\"%s\",\"uri\":\"%s\",\"type\":\"HTTP\","
			    "\"ip_addresses\":[\"%s\"],\"body\":\"%s\",\"code\":%d}\n",
			    json_name, json_version, uri_json, c->local_ip,
			    code == 200 ? json_message : reason, code);
	if (body_len >= (int)sizeof(body))
		body_len = (int)sizeof(body) - 1;
	head_len = snprintf(head_buf, sizeof(head_buf),
			    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			    "Content-Length: %d\r\n%s\r\n",
			    code, reason, body_len, keep_alive ? "" : "Connection: close\r\n");
	out_append(c, head_buf, (size_t)head_len);
	if (!head)
		out_append(c, body, (size_t)body_len);
	if (!keep_alive)
		c->close_after_flush = true;
}

static bool token_in_list(const char *v, size_t len, const char *token)
{
	size_t tl = strlen(token);

	for (size_t i = 0; i < len;) {
		size_t j;

		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		j = i;
		while (j < len && v[j] != ',' && v[j] != ' ' && v[j] != '\t')
			j++;
		if (j - i == tl && strncasecmp(v + i, token, tl) == 0)
			return true;
		i = j;
	}
	return false;
}

// Handles one request head [p, p+len) that ends with its blank line.
static void http_request(struct conn *c, const char *p, size_t len)
{
	const char *end = p + len, *line_end, *method, *uri, *version;
	size_t method_len, uri_len, version_len;
	bool http10, keep_alive, head;
	int code;

	line_end = memchr(p, '\n', len);
	method = p;
	uri = memchr(p, ' ', (size_t)(line_end - p));
	if (!uri)
		goto bad;
	method_len = (size_t)(uri - method);
	uri++;
	version = memchr(uri, ' ', (size_t)(line_end - uri));
	if (!version)
		goto bad;
	uri_len = (size_t)(version - uri);
	version++;
	version_len = (size_t)(line_end - version);
	if (version_len > 0 && version[version_len - 1] == '\r')
		version_len--;
	if (method_len == 0 || uri_len == 0 || version_len != 8 || memcmp(version, "HTTP/1.", 7) != 0 ||
	    version[7] < '0' || version[7] > '9')
		goto bad;
	for (size_t i = 0; i < method_len; i++)
		if (method[i] < 'A' || method[i] > 'Z')
			goto bad;
	http10 = version[7] == '0';
	keep_alive = !http10;

	for (const char *h = line_end + 1; h < end;) {
		const char *eol = memchr(h, '\n', (size_t)(end - h));
		const char *colon, *v, *ve;

		if (!eol)
			eol = end;
		ve = eol;
		if (ve > h && ve[-1] == '\r')
			ve--;
		if (ve == h)
			break;          // the blank line
		colon = memchr(h, ':', (size_t)(ve - h));
		if (!colon || colon == h)
			goto bad;
		v = colon + 1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		if (colon - h == 10 && strncasecmp(h, "connection", 10) == 0) {
			if (token_in_list(v, (size_t)(ve - v), "close"))
				keep_alive = false;
			else if (token_in_list(v, (size_t)(ve - v), "keep-alive"))
				keep_alive = true;
		} else if (colon - h == 14 && strncasecmp(h, "content-length", 14) == 0) {
			size_t n = 0;
			const char *d = v;

			while (d < ve && *d >= '0' && *d <= '9' && n < ((size_t)1 << 40))
				n = n * 10 + (size_t)(*d++ - '0');
			while (d < ve && (*d == ' ' || *d == '\t'))
				d++;
			if (d == v || d != ve)
				goto bad;
			c->body_left = n;
		} else if (colon - h == 17 && strncasecmp(h, "transfer-encoding", 17) == 0) {
			if (!token_in_list(v, (size_t)(ve - v), "identity"))
				goto bad;       // chunked bodies are not needed by any test
		}
		h = eol + 1;
	}
	head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
	code = head || (method_len == 3 && memcmp(method, "GET", 3) == 0) ? 200 : 405;
	http_respond(c, code, uri, uri_len, head, keep_alive);
	return;
bad:
	http_respond(c, 400, "", 0, false, false);
}

// Finds the end of a request head (after its blank line) in [p, p+len), or 0.
static size_t head_end(const char *p, size_t len)
{
	for (const char *nl = memchr(p, '\n', len); nl; nl = memchr(nl + 1, '\n', len - (size_t)(nl + 1 - p))) {
		const char *next = nl + 1;

		if (next < p + len && *next == '\n')
			return (size_t)(next + 1 - p);
		if (next + 1 < p + len && next[0] == '\r' && next[1] == '\n')
			return (size_t)(next + 2 - p);
		if (next >= p + len)
			break;
	}
	return 0;
}

// Answers every complete request in the input buffer (pipelining).
static void http_process(struct conn *c)
{
	size_t pos = 0;

	while (!c->close_after_flush && out_pending(c) < OUT_HIGH && pos < c->in_len) {
		size_t skip, end;

		if (c->body_left > 0) {
			skip = c->in_len - pos < c->body_left ? c->in_len - pos : c->body_left;
			pos += skip;
			c->body_left -= skip;
			continue;
		}
		// Stray CRLFs between requests are allowed by RFC 9112.
		if (c->in[pos] == '\r' || c->in[pos] == '\n') {
			pos++;
			continue;
		}
		end = head_end(c->in + pos, c->in_len - pos);
		if (end == 0) {
			if (c->in_len - pos >= HEADER_MAX)
				http_respond(c, 400, "", 0, false, false);
			break;
		}
		http_request(c, c->in + pos, end);
		pos += end;
	}
	if (pos > 0) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
}

// Returns -1 when the connection should be closed.
static int http_readable(struct conn *c)
{
	char sink[4096];

	// Requests held back while output was over the mark are answered first.
	if (!c->draining && c->in_len > 0)
		http_process(c);
	for (;;) {
		ssize_t n;

		if (c->draining) {
			n = recv(c->fd, sink, sizeof(sink), 0);
			if (n > 0)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			return -1;
		}
		if (c->close_after_flush || out_pending(c) >= OUT_HIGH)
			break;
		if (c->in_cap - c->in_len == 0) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
			char *p;

			if (cap > 2 * HEADER_MAX) {
				http_process(c);
				if (c->in_cap - c->in_len == 0)
					http_respond(c, 400, "", 0, false, false);
				continue;
			}
			p = realloc(c->in, cap);
			if (!p)
				die("out of memory");
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n == 0) {
			c->peer_closed = true;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		c->in_len += (size_t)n;
		http_process(c);
	}
	return conn_flush(c);
}

static int echo_readable(struct conn *c)
{
	char buf[IO_CHUNK];

	while (out_pending(c) < OUT_HIGH) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

		if (n == 0) {
			c->peer_closed = true;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		if (out_pending(c) == 0) {
			ssize_t w = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);

			if (w < 0 && errno != EAGAIN)
				return -1;
			if (w < 0)
				w = 0;
			if (w < n)
				out_append(c, buf + w, (size_t)(n - w));
		} else {
			out_append(c, buf, (size_t)n);
		}
	}
	return conn_flush(c);
}

static void conn_event(struct conn *c, uint32_t events)
{
	int rc = 0;

	if (events & EPOLLERR) {
		conn_free(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP))
		rc = c->kind == KIND_HTTP ? http_readable(c) : echo_readable(c);
	if (rc == 0 && (events & EPOLLOUT)) {
		rc = conn_flush(c);
		// Output drained below the mark: resume requests that waited for room.
		if (rc == 0 && c->kind == KIND_HTTP && !c->draining)
			rc = http_readable(c);
		else if (rc == 0 && c->kind == KIND_TCP && !c->peer_closed)
			rc = echo_readable(c);
	}
	if (rc < 0) {
		conn_free(c);
		return;
	}
	conn_update_interest(c);
}

static void accept_all(struct listener *l)
{
	for (int i = 0; i < 256; i++) {
		struct conn *c;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				if (spare_fd >= 0) {
					close(spare_fd);
					fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
					if (fd >= 0)
						close(fd);
					spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				}
				fprintf(stderr, "fakesvc: warning: out of file descriptors, refusing a connection\n");
			}
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c)
			die("out of memory");
		c->obj = OBJ_CONN;
		c->kind = l->kind;
		c->fd = fd;
		if (c->kind == KIND_TCP) {
			int one = 1;

			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			out_append(c, greeting, greeting_len);
			if (conn_flush(c) < 0) {
				conn_free(c);
				continue;
			}
		}
		c->events = EPOLLIN | (out_pending(c) ? EPOLLOUT : 0);
		epoll_add(fd, c->events, c);
	}
}

static void serve_udp(struct listener *l)
{
	static char payload[IO_CHUNK];

	for (int i = 0; i < 256; i++) {
		struct sockaddr_storage peer;
		char control[256], reply_control[256];
		struct iovec iov = { payload, sizeof(payload) };
		struct msghdr msg = {
			.msg_name = &peer, .msg_namelen = sizeof(peer),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = control, .msg_controllen = sizeof(control),
		};
		struct iovec out_iov[2];
		struct msghdr reply = { 0 };
		struct cmsghdr *cm;
		size_t room;
		ssize_t n = recvmsg(l->fd, &msg, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			continue;       // an ICMP error for an earlier reply: nothing to do
		}
		room = UDP_MAX_PAYLOAD - greeting_len;
		out_iov[0].iov_base = greeting;
		out_iov[0].iov_len = greeting_len;
		out_iov[1].iov_base = payload;
		out_iov[1].iov_len = (size_t)n < room ? (size_t)n : room;
		reply.msg_name = &peer;
		reply.msg_namelen = msg.msg_namelen;
		reply.msg_iov = out_iov;
		reply.msg_iovlen = 2;
		memset(reply_control, 0, sizeof(reply_control));
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			struct cmsghdr *rc;

			if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo pi;

				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
				pi.ipi_spec_dst = pi.ipi_addr;
				pi.ipi_ifindex = 0;
				reply.msg_control = reply_control;
				reply.msg_controllen = CMSG_SPACE(sizeof(pi));
				rc = CMSG_FIRSTHDR(&reply);
				rc->cmsg_level = IPPROTO_IP;
				rc->cmsg_type = IP_PKTINFO;
				rc->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(rc), &pi, sizeof(pi));
			} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
				struct in6_pktinfo pi;

				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
				// Only a link-local source needs the interface pinned.
				if (!IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
					pi.ipi6_ifindex = 0;
				reply.msg_control = reply_control;
				reply.msg_controllen = CMSG_SPACE(sizeof(pi));
				rc = CMSG_FIRSTHDR(&reply);
				rc->cmsg_level = IPPROTO_IPV6;
				rc->cmsg_type = IPV6_PKTINFO;
				rc->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(rc), &pi, sizeof(pi));
			}
		}
		sendmsg(l->fd, &reply, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
}

static void add_listener(enum kind kind, const char *spec)
{
	struct listener *l;

	if (svc.n_listeners == MAX_LISTENERS)
		usage_error("too many listeners (at most %d)", MAX_LISTENERS);
	l = &svc.listeners[svc.n_listeners++];
	l->kind = kind;
	l->spec = spec;
	l->fd = -1;
}

enum opt_id { OPT_NAME = 256, OPT_VERSION, OPT_MESSAGE, OPT_HTTP, OPT_TCP, OPT_UDP, OPT_PIDFILE, OPT_READY, OPT_HELP };

static const struct option options[] = {
	{ "name",       required_argument, NULL, OPT_NAME },
	{ "version",    required_argument, NULL, OPT_VERSION },
	{ "message",    required_argument, NULL, OPT_MESSAGE },
	{ "http",       required_argument, NULL, OPT_HTTP },
	{ "tcp",        required_argument, NULL, OPT_TCP },
	{ "udp",        required_argument, NULL, OPT_UDP },
	{ "pidfile",    required_argument, NULL, OPT_PIDFILE },
	{ "ready-file", required_argument, NULL, OPT_READY },
	{ "help",       no_argument,       NULL, OPT_HELP },
	{ 0 },
};

static void parse_args(int argc, char **argv)
{
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_NAME:    svc.name = optarg; break;
		case OPT_VERSION: svc.version = optarg; break;
		case OPT_MESSAGE: svc.message = optarg; break;
		case OPT_HTTP:    add_listener(KIND_HTTP, optarg); break;
		case OPT_TCP:     add_listener(KIND_TCP, optarg); break;
		case OPT_UDP:     add_listener(KIND_UDP, optarg); break;
		case OPT_PIDFILE: svc.pidfile = optarg; break;
		case OPT_READY:   svc.ready_file = optarg; break;
		case OPT_HELP:
			printf("usage: fakesvc --name NAME --version VER [--message MSG] [--http [ADDR:]PORT]...\n"
			       "               [--tcp [ADDR:]PORT]... [--udp [ADDR:]PORT]... [--pidfile FILE] [--ready-file FILE]\n");
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
	if (!svc.name || !svc.name[0])
		usage_error("--name is required");
	if (!svc.version || !svc.version[0])
		usage_error("--version is required");
	if (svc.n_listeners == 0)
		usage_error("no listener given (use --http, --tcp or --udp)");
	if (strchr(svc.name, '\n') || strchr(svc.version, '\n'))
		usage_error("--name and --version must be one line");
}

int main(int argc, char **argv)
{
	static char default_message[600];
	struct epoll_event events[256];
	struct { enum obj_type obj; int fd; } sig;
	char ready[MAX_LISTENERS * 96 + 1] = "";
	sigset_t mask;

	parse_args(argc, argv);
	if (!svc.message) {
		snprintf(default_message, sizeof(default_message), "Hello From %s", svc.name);
		svc.message = default_message;
	}
	greeting_len = (size_t)snprintf(greeting, sizeof(greeting), "%s %s\n", svc.name, svc.version);
	if (greeting_len >= sizeof(greeting))
		usage_error("--name and --version are too long");
	json_escape(json_name, sizeof(json_name), svc.name, strlen(svc.name));
	json_escape(json_version, sizeof(json_version), svc.version, strlen(svc.version));
	json_escape(json_message, sizeof(json_message), svc.message, strlen(svc.message));

	// A ready-file left by an earlier run must not make a test start early.
	if (svc.ready_file)
		unlink(svc.ready_file);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	raise_nofile();
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		die("epoll_create1: %s", strerror(errno));
	sig.obj = OBJ_SIGNAL;
	sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig.fd < 0)
		die("signalfd: %s", strerror(errno));
	epoll_add(sig.fd, EPOLLIN, &sig);

	if (svc.pidfile) {
		char pid[32];

		snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		write_file_atomic(svc.pidfile, pid);
	}
	for (int i = 0; i < svc.n_listeners; i++) {
		struct listener *l = &svc.listeners[i];
		size_t used = strlen(ready);

		open_listener(l);
		snprintf(ready + used, sizeof(ready) - used, "%s %s\n", kind_names[l->kind], l->bound);
	}
	if (svc.ready_file)
		write_file_atomic(svc.ready_file, ready);

	for (;;) {
		int n = epoll_wait(epoll_fd, events, 256, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			enum obj_type *obj = events[i].data.ptr;

			if (*obj == OBJ_SIGNAL) {
				if (svc.ready_file)
					unlink(svc.ready_file);
				if (svc.pidfile)
					unlink(svc.pidfile);
				return 0;
			} else if (*obj == OBJ_LISTENER) {
				struct listener *l = events[i].data.ptr;

				if (l->kind == KIND_UDP)
					serve_udp(l);
				else
					accept_all(l);
			} else {
				conn_event(events[i].data.ptr, events[i].events);
			}
		}
	}
}
