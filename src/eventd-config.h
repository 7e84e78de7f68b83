/* SPDX-License-Identifier: MIT */
/*
 * Configuration: the key table, the INI files (via libinih) and the
 * command-line twins of every key. A config is built whole and then handed
 * over; a reload builds a new one and keeps the old one when it fails.
 * Errors are reported as "file:line: what" through the error callback and
 * the functions return -EINVAL (bad content) or a negative errno (I/O).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eventd-config-value.h"

enum config_bus {
        CONFIG_BUS_SYSTEM,
        CONFIG_BUS_SESSION,
};

struct config {
        /* [Server] */
        char *url;                      /* URL=, as written */
        struct config_url server;       /* URL= parsed */
        char *activities_path;          /* ActivitiesPath=, starts and ends with '/' */
        char *import_path;              /* ImportPath= */
        unsigned engine_io;             /* EngineIO=, 3 or 4 */
        char *ca_file;                  /* CAFile=, NULL: system store */
        char *proxy;                    /* Proxy=, NULL: none (environment decides) */
        /* [Auth] */
        char *token_file;               /* TokenFile= */
        char *token_command;            /* TokenCommand= */
        char *refresh_token_file;       /* RefreshTokenFile= */
        char *auth_url;                 /* AuthURL= */
        /* [Reconnect] */
        usec_t initial_delay_usec;      /* InitialDelaySec= */
        usec_t max_delay_usec;          /* MaxDelaySec= */
        /* [Limits] */
        size_t max_event_size;          /* MaxEventSize=, bytes */
        usec_t browse_timeout_usec;     /* BrowseTimeoutSec= */
        /* [Bus] */
        enum config_bus bus;            /* Bus= */
        /* [Log] */
        int log_level;                  /* Level=, syslog priority, LOG_INFO default */
};

/* Called once per problem found; where is "file:line" or "--option". */
typedef void (*config_error_fn)(const char *where, const char *what, void *userdata);

/* A fresh config holding every default. */
int config_new(struct config **ret);
/* NULL is fine. */
void config_free(struct config *c);

/*
 * Sets one key, checking its value. section and key are matched exactly
 * (case-sensitive, as in systemd's .conf files). Unknown sections and keys
 * are errors. An empty value resets the key to its default.
 * Returns 0, or -EINVAL with a message in ret_error (caller frees).
 */
int config_set(struct config *c, const char *section, const char *key, const char *value,
               char **ret_error);

/*
 * Parses one INI file into c. Every problem is reported through error_fn as
 * "path:line"; parsing goes on to find them all and then returns -EINVAL.
 * -ENOENT (reported) when the file does not exist, other negative errno on
 * I/O errors. Lines longer than 4096 bytes are errors.
 */
int config_load_file(struct config *c, const char *path, config_error_fn error_fn,
                     void *userdata);

/*
 * Loads the default files for the given bus into c: for the system bus
 * /etc/samdock/eventd.conf then /etc/samdock/eventd.conf.d/ *.conf in
 * lexical order; for the session bus $XDG_CONFIG_HOME/samdock/eventd.conf
 * (~/.config when unset) and its eventd.conf.d/. Missing files are fine.
 * root overrides the "/etc" prefix for tests (NULL for the real one).
 */
int config_load_defaults(struct config *c, enum config_bus bus, const char *root,
                         config_error_fn error_fn, void *userdata);

/* Checks relations between keys once everything is loaded (for example
 * InitialDelaySec= <= MaxDelaySec=). Reports through error_fn with where
 * "configuration". */
int config_verify(const struct config *c, config_error_fn error_fn, void *userdata);

/* For the command line: the twin of each key. */
struct config_option {
        const char *long_name;  /* "url", "activities-path", ... */
        const char *section;
        const char *key;
        const char *help;
};
extern const struct config_option config_options[];
extern const size_t config_options_count;
