// A small AML (ACPI Machine Language) encoder: just the terms our DSDT needs (ACPI 6.5, chapter 20).
// Each function returns the encoded bytes of one term; compose them by nesting. Names are ACPI name
// strings: "\\_SB_", "_HID", "COM1", "\\_SB_.COM1"; segments shorter than 4 characters are padded with '_'.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coalesce::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength for a body of `body_len` bytes (the encoding counts its own bytes).
Bytes PkgLength(size_t body_len);
Bytes NameString(std::string_view path);
// The smallest encoding: ZeroOp, OneOp, or Byte/Word/DWord/QWord prefix.
Bytes Integer(uint64_t value);
Bytes String(std::string_view text);
// A compressed EISA id ("PNP0501") as a DWord integer.
Bytes EisaId(std::string_view id);
uint32_t EisaIdValue(std::string_view id);
Bytes Name(std::string_view name, const Bytes& value);
Bytes Package(const std::vector<Bytes>& elements);
Bytes Buffer(const Bytes& data);
Bytes Scope(std::string_view name, const std::vector<Bytes>& terms);
Bytes Device(std::string_view name, const std::vector<Bytes>& terms);

// Control methods and the statements the DSDT's CPU hotplug methods use (ACPI 6.5, 19.6 and 20.2.5).
// Method(name, args, Serialized|NotSerialized) { terms }
Bytes Method(std::string_view name, uint8_t arg_count, bool serialized, const std::vector<Bytes>& terms);
Bytes If(const Bytes& predicate, const std::vector<Bytes>& terms);
Bytes Return(const Bytes& value);
// Notify(object, value): 1 = device check (a device appeared), 3 = eject request.
Bytes Notify(std::string_view object, const Bytes& value);
// Store(value, target): `target` a name (a field unit, say).
Bytes Store(const Bytes& value, std::string_view target);
// A reference to a named object as an operand (a field unit read as a predicate, say), or a call of a method
// with no arguments.
Bytes Ref(std::string_view name);
Bytes Arg(uint8_t n);  // Arg0..Arg6
// A call of method `name` with `args` (the interpreter knows the count from the method's definition).
Bytes Call(std::string_view name, const std::vector<Bytes>& args);

// OperationRegion(name, SystemIO, base, length)
Bytes SystemIoRegion(std::string_view name, uint16_t base, uint16_t length);
// Field(region, ByteAcc, NoLock, Preserve) { units }: each unit `bits` wide, in order; an empty name
// leaves its bits unnamed (Offset-style padding).
struct FieldUnit {
  std::string name;
  uint32_t bits;
};
Bytes ByteField(std::string_view region, const std::vector<FieldUnit>& units);

// A resource template (the _CRS buffer): descriptors appended in order, closed by an End Tag.
class ResourceTemplate final {
 public:
  // IO(Decode16, base, base, 1, len)
  ResourceTemplate& Io(uint16_t base, uint8_t len);
  // IRQNoFlags() {irq}: edge-triggered, active-high ISA interrupt (irq < 16).
  ResourceTemplate& IrqNoFlags(uint8_t irq);
  // Memory32Fixed(ReadWrite, base, len)
  ResourceTemplate& Memory32Fixed(uint32_t base, uint32_t len);
  // QWordMemory(ResourceConsumer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, 0, base, base+len-1, 0,
  // len): a 64-bit memory range (a hot-pluggable memory device's _CRS).
  ResourceTemplate& QWordMemory(uint64_t base, uint64_t len);
  // Interrupt(ResourceConsumer, Level|Edge, ActiveHigh, Exclusive) {gsi}
  ResourceTemplate& Interrupt(uint32_t gsi, bool level_triggered);
  // The Buffer term holding every descriptor and the End Tag.
  [[nodiscard]] Bytes ToBuffer() const;

 private:
  Bytes descriptors_;
};

}  // namespace coalesce::aml
