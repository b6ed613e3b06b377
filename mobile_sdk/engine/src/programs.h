// The package's ExecuTorch programs, one Module per component, memory-mapped (no mlock: a locked
// mapping of a few hundred MB fails or evicts everything else on a phone).
#pragma once

#include <executorch/extension/module/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mvd/engine.h"

namespace mvd {

// Checks the flatbuffer identifier ("ET" + two digits at byte 4) so that a file that is not a
// program is an error here instead of undefined behaviour inside the runtime.
Status check_pte_header(const std::string& path);

// Opens `path` (header check, then a full flatbuffer verification) as an mmap-backed Module.
Result<std::unique_ptr<executorch::extension::Module>> open_module(const std::string& path);

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

class Programs {
 public:
  // component -> .pte path; component -> method -> manifest input specs (checked against the program).
  static Result<std::unique_ptr<Programs>> open(const std::map<std::string, std::string>& files,
                                                const std::map<std::string, std::map<std::string, std::vector<TensorSpec>>>& methods);

  // Runs a loaded method; checks every input's dtype and shape against the program first.
  Result<std::vector<Tensor>> run(const std::string& component, const std::string& method, const std::vector<Tensor>& inputs);
  // The input specs the program itself declares for a method.
  Result<std::vector<TensorSpec>> input_specs(const std::string& component, const std::string& method);

 private:
  struct Program {
    std::string path;
    std::unique_ptr<executorch::extension::Module> module;
  };
  std::map<std::string, Program> programs_;
};

}  // namespace mvd
