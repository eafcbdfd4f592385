/* tape_internal.h - what call.c and tape.c share. */
#ifndef MILE_TAPE_INTERNAL_H
#define MILE_TAPE_INTERNAL_H

#include <stdbool.h>

#include "mile/tape.h"

/* Run a call without recording it (the dispatcher behind mile_call_run and replay). */
mile_status mile_call_exec(mile_call *c);
/* Ops that write into their first input(s) rather than making an output. */
bool mile_op_in_place(mile_op op);

#endif
