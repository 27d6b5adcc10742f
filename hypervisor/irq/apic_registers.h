// xAPIC register offsets within the 4 KiB MMIO page and the bit fields of the registers the local APIC
// emulation decodes (Intel SDM vol. 3, chapter "Advanced Programmable Interrupt Controller").
#pragma once

#include <cstdint>

namespace coalesce::apic {

// Register offsets. Every register is 32 bits wide and 16-byte aligned.
inline constexpr uint32_t kId = 0x020;
inline constexpr uint32_t kVersion = 0x030;
inline constexpr uint32_t kTpr = 0x080;
inline constexpr uint32_t kApr = 0x090;
inline constexpr uint32_t kPpr = 0x0a0;
inline constexpr uint32_t kEoi = 0x0b0;
inline constexpr uint32_t kRrd = 0x0c0;
inline constexpr uint32_t kLdr = 0x0d0;
inline constexpr uint32_t kDfr = 0x0e0;
inline constexpr uint32_t kSvr = 0x0f0;
inline constexpr uint32_t kIsrBase = 0x100;  // 8 registers
inline constexpr uint32_t kTmrBase = 0x180;  // 8 registers
inline constexpr uint32_t kIrrBase = 0x200;  // 8 registers
inline constexpr uint32_t kEsr = 0x280;
inline constexpr uint32_t kIcrLow = 0x300;
inline constexpr uint32_t kIcrHigh = 0x310;
inline constexpr uint32_t kLvtTimer = 0x320;
inline constexpr uint32_t kLvtThermal = 0x330;
inline constexpr uint32_t kLvtPerf = 0x340;
inline constexpr uint32_t kLvtLint0 = 0x350;
inline constexpr uint32_t kLvtLint1 = 0x360;
inline constexpr uint32_t kLvtError = 0x370;
inline constexpr uint32_t kTimerInitialCount = 0x380;
inline constexpr uint32_t kTimerCurrentCount = 0x390;
inline constexpr uint32_t kTimerDivide = 0x3e0;

// Version register: version 0x14 (integrated xAPIC), max LVT entry index 5 (timer, thermal, perf, LINT0,
// LINT1, error), no EOI-broadcast suppression.
inline constexpr uint32_t kVersionValue = 0x0005'0014;

// Spurious-interrupt vector register.
inline constexpr uint32_t kSvrSoftwareEnable = 1u << 8;
inline constexpr uint32_t kSvrWritable = 0x3ff;  // vector, enable, focus-processor checking
inline constexpr uint32_t kSvrReset = 0xff;

// Destination format register: model in bits 28-31, bits 0-27 read as ones.
inline constexpr uint32_t kDfrFlat = 0xf;
inline constexpr uint32_t kDfrCluster = 0x0;
inline constexpr uint32_t kDfrReset = 0xffff'ffff;

// Error status register bits.
inline constexpr uint32_t kEsrSendIllegalVector = 1u << 5;
inline constexpr uint32_t kEsrReceiveIllegalVector = 1u << 6;

// Interrupt command register (low word).
inline constexpr uint32_t kIcrLowWritable = 0x000c'cfff;  // vector, mode, dest mode, level, trigger, shorthand
inline constexpr uint32_t kIcrLevelAssert = 1u << 14;
inline constexpr uint32_t kIcrLevelTrigger = 1u << 15;
inline constexpr uint32_t kIcrHighWritable = 0xff00'0000;

// Local vector table entries.
inline constexpr uint32_t kLvtMasked = 1u << 16;
inline constexpr uint32_t kLvtLevelTrigger = 1u << 15;
inline constexpr uint32_t kLvtTimerPeriodic = 1u << 17;
inline constexpr uint32_t kLvtReset = kLvtMasked;
// Bits software may write, per entry (delivery status and remote IRR are read-only; no TSC-deadline mode).
inline constexpr uint32_t kLvtTimerWritable = 0x0003'00ff;
inline constexpr uint32_t kLvtThermalPerfWritable = 0x0001'07ff;
inline constexpr uint32_t kLvtLintWritable = 0x0001'a7ff;
inline constexpr uint32_t kLvtErrorWritable = 0x0001'00ff;
// BSP's LINT0 at reset: ExtINT, unmasked ("virtual wire" as firmware leaves it), so the PIC reaches the
// BSP before the guest programs its APIC.
inline constexpr uint32_t kLvtLint0VirtualWire = 0x700;

inline constexpr uint32_t kTimerDivideWritable = 0xb;

// Fields shared by ICR low, LVT and IOAPIC redirection entries.
inline constexpr uint8_t VectorOf(uint32_t value) { return static_cast<uint8_t>(value & 0xff); }
inline constexpr uint32_t DeliveryModeBits(uint32_t value) { return (value >> 8) & 7; }
inline constexpr bool IsMasked(uint32_t lvt) { return (lvt & kLvtMasked) != 0; }

// Vectors 0-15 are reserved for exceptions; the APIC refuses them for fixed interrupts.
inline constexpr uint8_t kFirstLegalVector = 16;

}  // namespace coalesce::apic
