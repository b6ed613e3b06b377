// The package folder: manifest.json parsed and checked, every referenced path confined to the
// folder and listed in `files`, checksums verified.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "mvd/engine.h"

namespace mvd {

class Package {
 public:
  static Result<std::unique_ptr<Package>> open(const std::string& dir, bool verify_checksums);

  const std::string& root() const { return root_; }
  const nlohmann::json& manifest() const { return manifest_; }
  std::string manifest_path() const;
  const std::string& manifest_sha256() const { return manifest_sha256_; }
  // The absolute path of a file the manifest lists (checked at open: inside the folder, listed).
  std::string path(const std::string& relative) const { return root_ + "/" + relative; }

  // A JSON value at a '/'-separated key path, with an Error naming the manifest and the key.
  Result<const nlohmann::json*> at(const std::string& key_path) const;
  Result<Tensor> read_tensor(const nlohmann::json& spec, const std::string& where) const;

 private:
  std::string root_;
  nlohmann::json manifest_;
  std::string manifest_sha256_;
};

}  // namespace mvd
