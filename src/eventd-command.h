/* SPDX-License-Identifier: MIT */
/*
 * Runs TokenCommand= without blocking the loop: a child in a process group
 * of its own, a minimal environment, stdout taken as the token, the first
 * line of stderr kept for LastError, and the whole group killed when it
 * runs past its time. The result comes back through a callback from
 * sd-event; the token never appears in argv or the environment.
 */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

struct command;

/* token: the cleaned output (the callee owns it and must wipe it), NULL
 * when the command failed; error then says why, for logs and LastError.
 * The callback may free the command. */
typedef void (*command_done_fn)(struct command *c, char *token, const char *error,
                                void *userdata);

/* Starts command_line (split as token_command_split() says) with a limit of
 * timeout_usec. SIGCHLD must be blocked (sd-event reaps the child). */
int command_start(struct command **ret, sd_event *event, const char *command_line,
                  uint64_t timeout_usec, command_done_fn done, void *userdata);
/* Kills the process group if it still runs, and reaps it. NULL is fine. */
struct command *command_free(struct command *c);
