#include "fw_cfg.h"
#include "io.h"
#include "layout.h"
#include "runtime.h"

void fw_cfg_read(uint16_t key, void *buf, uint32_t len) {
  outw(FW_CFG_PORT_SEL, key);
  uint8_t *p = buf;
  for (uint32_t i = 0; i < len; i++) p[i] = inb(FW_CFG_PORT_DATA);
}

uint16_t fw_cfg_read16(uint16_t key) {
  uint8_t b[2];
  fw_cfg_read(key, b, 2);
  return (uint16_t)(b[0] | (b[1] << 8)); /* fw_cfg items are little-endian */
}

uint32_t fw_cfg_read32(uint16_t key) {
  uint8_t b[4];
  fw_cfg_read(key, b, 4);
  return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

bool fw_cfg_present(void) {
  char sig[4];
  fw_cfg_read(FW_CFG_SIGNATURE, sig, 4);
  return memcmp(sig, "QEMU", 4) == 0;
}

unsigned fw_cfg_cpu_count(void) {
  if (!fw_cfg_present()) guest_fail_code(GUEST_EXIT_ENV, "fw_cfg signature is not \"QEMU\"");
  unsigned n = fw_cfg_read16(FW_CFG_NB_CPUS);
  if (n < 1 || n > GUEST_MAX_CPUS)
    guest_fail_code(GUEST_EXIT_ENV, "FW_CFG_NB_CPUS = %u, outside 1..%u", n, GUEST_MAX_CPUS);
  return n;
}
