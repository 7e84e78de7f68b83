/* SPDX-License-Identifier: MIT */
/*
 * The proxy rules that curl and most tools follow, so that the daemon
 * behaves like everything else on a machine configured for a proxy.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "eventd-proxy.h"

bool proxy_excluded(const char *no_proxy, const char *host) {
        size_t host_len = strlen(host);

        while (no_proxy && *no_proxy) {
                size_t len = strcspn(no_proxy, ", \t");
                const char *entry = no_proxy, *colon;

                no_proxy += len;
                no_proxy += strspn(no_proxy, ", \t");

                /* "host:port", but not an IPv6 literal, which has several. */
                colon = memchr(entry, ':', len);
                if (colon && !memchr(colon + 1, ':', len - (size_t) (colon - entry) - 1))
                        len = (size_t) (colon - entry);
                if (len > 0 && entry[0] == '.') {
                        entry++;
                        len--;
                }
                if (len == 0)
                        continue;
                if (len == 1 && entry[0] == '*')
                        return true;
                if (host_len == len && strncasecmp(host, entry, len) == 0)
                        return true;
                if (host_len > len && host[host_len - len - 1] == '.' &&
                    strncasecmp(host + host_len - len, entry, len) == 0)
                        return true;
        }
        return false;
}

const char *proxy_choose(const char *setting, bool tls, const char *host,
                         proxy_getenv_fn get, const char **ret_source) {
        static const char *const tls_names[] = { "HTTPS_PROXY", "https_proxy" };
        static const char *const plain_names[] = { "HTTP_PROXY", "http_proxy" };
        const char *const *names = tls ? tls_names : plain_names;
        const char *no_proxy, *value;

        *ret_source = NULL;
        if (setting) {
                *ret_source = "Proxy=";
                return setting;
        }
        no_proxy = get("NO_PROXY");
        if (!no_proxy)
                no_proxy = get("no_proxy");
        if (proxy_excluded(no_proxy, host))
                return NULL;
        for (size_t i = 0; i < 2; i++) {
                value = get(names[i]);
                if (value && *value) {
                        *ret_source = names[i];
                        return value;
                }
        }
        return NULL;
}
