/* log.h: the log sink (the only mutable global besides configuration).
 * Thread-safe: each line is written with one write(2) call. */
#ifndef IMAPFERRY_LOG_H
#define IMAPFERRY_LOG_H

#include "base.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* Sets the minimum level written and the file descriptor (default: stderr,
 * LOG_INFO). Call before starting threads. */
void log_configure(enum log_level level, int fd);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) ATTR_PRINTF(2, 3);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_trace(...) do { if (log_enabled(LOG_TRACE)) log_msg(LOG_TRACE, __VA_ARGS__); } while (0)

#endif
