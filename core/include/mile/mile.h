/* mile/mile.h - the umbrella header of mile's C core. */
#ifndef MILE_MILE_H
#define MILE_MILE_H

#include "mile/status.h"
#include "mile/compute.h"
#include "mile/tensor.h"
#include "mile/ops.h"
#include "mile/plan.h"
#include "mile/rng.h"
#include "mile/autograd.h"
#include "mile/intervention.h"
#include "mile/optim.h"
#include "mile/tape.h"
#include "mile/io.h"
#include "mile/data.h"

#endif
