// SPDX-License-Identifier: MIT
/* Commands that talk to sluiced: placeholders until the daemon protocol lands. */
#include "main.h"

static int not_yet(const char *what)
{
	p_err("'sluice %s' needs sluiced, which is not built yet; use 'sluice plan' to see the routing", what);
	return EXIT_UNREACHABLE;
}

int do_apply(void) { return not_yet("apply"); }
int do_weight(void) { return not_yet("weight"); }
int do_status(void) { return not_yet("status"); }
