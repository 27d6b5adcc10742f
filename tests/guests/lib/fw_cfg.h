/* QEMU fw_cfg, legacy port interface: 16-bit selector at 0x510, data bytes at 0x511. */
#pragma once

#include "types.h"

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_NB_CPUS 0x05

bool fw_cfg_present(void); /* signature reads "QEMU" */
void fw_cfg_read(uint16_t key, void *buf, uint32_t len);
uint16_t fw_cfg_read16(uint16_t key);
uint32_t fw_cfg_read32(uint16_t key);
/* FW_CFG_NB_CPUS; fails the guest (GUEST_EXIT_ENV) if fw_cfg is missing or the count is out of range. */
unsigned fw_cfg_cpu_count(void);
