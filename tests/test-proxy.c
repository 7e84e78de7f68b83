/* SPDX-License-Identifier: MIT */
/* The proxy choice: Proxy= first, then the scheme's variable, NO_PROXY. */
#include <stdlib.h>
#include <string.h>

#include "eventd-proxy.h"
#include "test-util.h"

static const char *const *environment;

static char *fake_getenv(const char *name) {
        for (size_t i = 0; environment[i]; i += 2)
                if (strcmp(environment[i], name) == 0)
                        return (char *) environment[i + 1];
        return NULL;
}

static const char *choose(const char *setting, bool tls, const char *host,
                          const char *const *env, const char **source) {
        environment = env;
        return proxy_choose(setting, tls, host, fake_getenv, source);
}

static void test_excluded(void) {
        CHECK(!proxy_excluded(NULL, "example.com"));
        CHECK(!proxy_excluded("", "example.com"));
        CHECK(proxy_excluded("*", "anything"));
        CHECK(proxy_excluded("example.com", "example.com"));
        CHECK(proxy_excluded("example.com", "api.example.com"));
        CHECK(proxy_excluded(".example.com", "api.example.com"));
        CHECK(proxy_excluded(".example.com", "example.com"));
        CHECK(!proxy_excluded("example.com", "badexample.com"));
        CHECK(!proxy_excluded("api.example.com", "example.com"));
        CHECK(proxy_excluded("localhost, 127.0.0.1", "127.0.0.1"));
        CHECK(proxy_excluded("foo,bar  EXAMPLE.com", "dev.example.COM"));
        CHECK(proxy_excluded("127.0.0.1:8080", "127.0.0.1"));
        CHECK(proxy_excluded("::1", "::1"));
        CHECK(!proxy_excluded("::1", "::2"));
        CHECK(!proxy_excluded(",,, ,", "example.com"));
}

static void test_choose(void) {
        const char *const none[] = { NULL };
        const char *const env[] = {
                "HTTPS_PROXY", "http://secure:3128",
                "http_proxy", "http://plain:3128",
                NULL,
        };
        const char *const env_no[] = {
                "https_proxy", "http://secure:3128",
                "no_proxy", ".samdock.app",
                NULL,
        };
        const char *source;

        CHECK(choose(NULL, true, "dev.samdock.app", none, &source) == NULL);
        CHECK(source == NULL);
        CHECK_STR(choose("http://set:1", true, "h", env, &source), "http://set:1");
        CHECK_STR(source, "Proxy=");
        /* Proxy= wins even over NO_PROXY: it was asked for. */
        CHECK_STR(choose("http://set:1", true, "dev.samdock.app", env_no, &source),
                  "http://set:1");
        CHECK_STR(choose(NULL, true, "h", env, &source), "http://secure:3128");
        CHECK_STR(source, "HTTPS_PROXY");
        CHECK_STR(choose(NULL, false, "h", env, &source), "http://plain:3128");
        CHECK_STR(source, "http_proxy");
        CHECK(choose(NULL, true, "dev.samdock.app", env_no, &source) == NULL);
        CHECK_STR(choose(NULL, true, "samdock.example", env_no, &source), "http://secure:3128");
        CHECK_STR(source, "https_proxy");
}

int main(void) {
        test_excluded();
        test_choose();
        printf("test-proxy: ok\n");
        return 0;
}
