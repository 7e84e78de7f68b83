/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the configuration parsers. The input is loaded as an
 * INI file through a memfd, so the real fopen()/getc() path and libinih run,
 * and then, as a string, given to the URL, size and time parsers and to every
 * key through config_set().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "eventd-config.h"

/* Reads both strings so that a dangling or unterminated one shows up. */
static void discard(const char *where, const char *what, void *userdata) {
        size_t *total = userdata;

        *total += strlen(where) + strlen(what);
}

static void load_as_file(const uint8_t *data, size_t size) {
        static char path[64];
        static int fd = -1;
        struct config *c;
        size_t total = 0;

        /* One memfd for the whole run; each input replaces its content. */
        if (fd < 0) {
                fd = memfd_create("fuzz-config", MFD_CLOEXEC);
                if (fd < 0)
                        abort();
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        }
        if (ftruncate(fd, 0) < 0)
                abort();
        if (size > 0 && pwrite(fd, data, size, 0) != (ssize_t) size)
                abort();

        if (config_new(&c) < 0)
                abort();
        (void) config_load_file(c, path, discard, &total);
        (void) config_verify(c, discard, &total);
        config_free(c);
}

static void parse_as_string(const char *s) {
        struct config_url url = { 0 };
        struct config *c;
        char *error = NULL;
        size_t size;
        usec_t usec;

        if (config_url_parse(s, &url, &error) == 0)
                config_url_release(&url);
        free(error);
        (void) config_parse_size(s, &size);
        (void) config_parse_seconds(s, &usec);

        if (config_new(&c) < 0)
                abort();
        for (size_t i = 0; i < config_options_count; i++) {
                (void) config_set(c, config_options[i].section, config_options[i].key, s, &error);
                free(error);
        }
        (void) config_set(c, "Bus", "Bus", s, &error);
        free(error);
        /* And as a section or a key name. */
        (void) config_set(c, s, "URL", "", &error);
        free(error);
        (void) config_set(c, "Server", s, "", &error);
        free(error);
        (void) config_verify(c, NULL, NULL);
        config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s;

        load_as_file(data, size);

        s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        parse_as_string(s);
        free(s);
        return 0;
}
