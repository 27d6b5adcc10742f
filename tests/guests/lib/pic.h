/* 8259 pair: remapped to vectors 0x20-0x2f and fully masked; the tests route everything through the APICs. */
#pragma once

#define PIC_VECTOR_BASE 0x20
void pic_remap_and_mask(void);
