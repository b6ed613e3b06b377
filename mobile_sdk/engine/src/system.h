#pragma once

#include <string>

namespace mvd::detail {

struct DeviceFacts {
  std::string model, soc, os, abi;
};

// What the benchmark result records about the machine (Android properties, or DMI and cpuinfo).
DeviceFacts device_facts();

}  // namespace mvd::detail
