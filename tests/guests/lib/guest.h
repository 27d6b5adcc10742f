/* Everything a test guest needs. */
#pragma once

#include "atomic.h"
#include "console.h"
#include "fw_cfg.h"
#include "io.h"
#include "ioapic.h"
#include "lapic.h"
#include "pic.h"
#include "runtime.h"
#include "smp.h"
#include "timing.h"
#include "types.h"
