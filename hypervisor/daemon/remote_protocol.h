// Facts of libvirt's remote protocol that the daemon serves: the program number and version, the procedure
// numbers it implements (from libvirt's public remote_protocol.x; numbers never change there), the feature
// numbers clients ask about, and the flag bits it reads. Names are kept for the "not supported" error.
#pragma once

#include <cstdint>
#include <string>

namespace coalesce::daemon {

inline constexpr uint32_t kRemoteProgram = 0x20008086;
inline constexpr uint32_t kRemoteVersion = 1;
// libvirt's keepalive program: clients only use it when the server says it supports it, and ours does not.
inline constexpr uint32_t kKeepaliveProgram = 0x6b656570;

enum Proc : int32_t {
  kProcConnectOpen = 1,
  kProcConnectClose = 2,
  kProcConnectGetType = 3,
  kProcConnectGetVersion = 4,
  kProcConnectGetMaxVcpus = 5,
  kProcNodeGetInfo = 6,
  kProcConnectGetCapabilities = 7,
  kProcDomainCreate = 9,
  kProcDomainDefineXml = 11,
  kProcDomainDestroy = 12,
  kProcDomainGetXmlDesc = 14,
  kProcDomainGetAutostart = 15,
  kProcDomainGetInfo = 16,
  kProcDomainGetMaxMemory = 17,
  kProcDomainGetMaxVcpus = 18,
  kProcDomainGetOsType = 19,
  kProcDomainGetVcpus = 20,
  kProcConnectListDefinedDomains = 21,
  kProcDomainLookupById = 22,
  kProcDomainLookupByName = 23,
  kProcDomainLookupByUuid = 24,
  kProcConnectNumOfDefinedDomains = 25,
  kProcDomainReboot = 27,
  kProcDomainResume = 28,
  kProcDomainShutdown = 33,
  kProcDomainSuspend = 34,
  kProcDomainUndefine = 35,
  kProcConnectListDomains = 37,
  kProcConnectNumOfDomains = 51,
  kProcConnectGetHostname = 59,
  kProcConnectSupportsFeature = 60,
  kProcAuthList = 66,
  kProcConnectGetUri = 110,
  kProcDomainGetSecurityLabel = 121,
  kProcNodeGetSecurityModel = 122,
  kProcConnectIsSecure = 149,
  kProcDomainIsActive = 150,
  kProcDomainIsPersistent = 151,
  kProcConnectGetLibVersion = 157,
  kProcDomainHasManagedSaveImage = 183,
  kProcDomainCreateWithFlags = 196,
  kProcDomainSetVcpusFlags = 199,
  kProcDomainGetVcpusFlags = 200,
  kProcDomainOpenConsole = 201,
  kProcDomainIsUpdated = 202,
  kProcDomainGetState = 212,
  kProcDomainGetControlInfo = 229,
  kProcDomainUndefineFlags = 231,
  kProcDomainDestroyFlags = 234,
  kProcDomainShutdownFlags = 258,
  kProcConnectListAllDomains = 273,
  kProcDomainDefineXmlFlags = 350,
};

// virDomainModificationImpact and virDomainVcpuFlags bits (SET/GET_VCPUS_FLAGS).
enum : uint32_t {
  kAffectLive = 1u << 0,
  kAffectConfig = 1u << 1,
  kVcpuMaximum = 1u << 2,
  kVcpuGuest = 1u << 3,
  kVcpuHotpluggable = 1u << 4,
};

// CONNECT_LIST_ALL_DOMAINS filter bits (virConnectListAllDomainsFlags).
enum : uint32_t {
  kListActive = 1u << 0,
  kListInactive = 1u << 1,
  kListPersistent = 1u << 2,
  kListTransient = 1u << 3,
  kListRunning = 1u << 4,
  kListPaused = 1u << 5,
  kListShutoff = 1u << 6,
  kListOther = 1u << 7,
};
// DOMAIN_OPEN_CONSOLE flags.
inline constexpr uint32_t kConsoleForce = 1u << 0;
// DOMAIN_GET_XML_DESC flags that change nothing here: SECURE, INACTIVE, UPDATE_CPU, MIGRATABLE.

// The procedure's libvirt name for messages ("procedure 123" when it is not one we know).
std::string ProcedureName(int32_t proc);

}  // namespace coalesce::daemon
