/* SPDX-License-Identifier: MIT */
/*
 * Which HTTP proxy a connection goes through: Proxy= when set, else the
 * environment's HTTPS_PROXY (for wss://) or HTTP_PROXY (for ws://), in
 * upper or lower case, unless NO_PROXY names the server. Pure apart from
 * the environment lookup, which the caller passes in (tests pass their own).
 */
#pragma once

#include <stdbool.h>

typedef char *(*proxy_getenv_fn)(const char *name);

/* True when the NO_PROXY list names host: entries separated by commas or
 * blanks; "*" matches all, "example.com" and ".example.com" match it and its
 * subdomains, anything else exactly (case-insensitive); a ":port" on an
 * entry is ignored. */
bool proxy_excluded(const char *no_proxy, const char *host);

/* The proxy URL to use, or NULL to go direct; *ret_source names where it
 * came from ("Proxy=", "HTTPS_PROXY", ...) for the log. */
const char *proxy_choose(const char *setting, bool tls, const char *host,
                         proxy_getenv_fn get, const char **ret_source);
