/* SPDX-License-Identifier: MIT */
/* Exit statuses of sluice, one meaning each (README lists them). sluiced sends the CLI's status in
 * its reply, so both programs read them from here. */
#ifndef SLUICE_EXIT_H
#define SLUICE_EXIT_H

enum exit_code {
	EXIT_DONE = 0,
	EXIT_INVALID = 1,      /* not done: invalid input, or sluiced could not apply or save it */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,  /* daemon unreachable, not answering in time, or permission denied */
};

#endif
