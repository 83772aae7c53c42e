#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;
static int log_fd = 2;

void
log_configure(enum log_level level, int fd)
{
	log_min = level;
	log_fd = fd;
}

bool
log_enabled(enum log_level level)
{
	return level <= log_min;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug", "trace" };
	char line[4096], msg[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int k;
	va_list ap;

	if (level > log_min)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ld %s: ",
	             ts.tv_nsec / 1000000, names[level]);
	n += k > 0 ? (size_t)k : 0;
	va_start(ap, fmt);
	k = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote folder names and server text: control characters
	 * (a hostile "\x1b[31m", CR LF splitting a line) are shown as \xHH. */
	for (int i = 0; k > 0 && i < k && (size_t)i < sizeof(msg) - 1 &&
	     n < sizeof(line) - 5; i++) {
		unsigned char c = (unsigned char)msg[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			line[n++] = '\\';
			line[n++] = 'x';
			line[n++] = "0123456789abcdef"[c >> 4];
			line[n++] = "0123456789abcdef"[c & 15];
		} else {
			line[n++] = (char)c;
		}
	}
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* nowhere left to report it */
	}
}
