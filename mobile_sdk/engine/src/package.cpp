#include "package.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "mvd/contract_names.h"
#include "sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mvd {
namespace {

Error package_error(const std::string& where, const std::string& what) {
  return {ErrorCode::kPackage, where + ": " + what};
}

// A manifest path must be a plain relative posix path: no absolute path, '..', '.', empty part
// or backslash (the same rule as the zip extractor in mobile_sdk/package.py).
bool is_plain_relative(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.find('\\') != std::string::npos || p.find(':') != std::string::npos)
    return false;
  std::stringstream ss(p);
  std::string part;
  while (std::getline(ss, part, '/'))
    if (part.empty() || part == "." || part == "..") return false;
  return p.back() != '/';
}

// Every string under a "file" key, anywhere in the manifest (components, tokenizer, test vectors).
void collect_file_refs(const json& j, const std::string& key_path, std::vector<std::pair<std::string, std::string>>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string here = key_path.empty() ? it.key() : key_path + "/" + it.key();
      if (it.key() == "file" && it.value().is_string()) out.emplace_back(here, it.value().get<std::string>());
      else collect_file_refs(it.value(), here, out);
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) collect_file_refs(j[i], key_path + "/" + std::to_string(i), out);
  }
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error{ErrorCode::kPackage, path + ": cannot read (missing or not readable)"};
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<json> parse_json(const std::string& path, const std::string& what) {
  auto text = read_text(path);
  if (!text.ok()) return text.error();
  json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return package_error(path, "not valid JSON (" + what + ")");
  return j;
}

}  // namespace

std::string Package::manifest_path() const { return root_ + "/" + contract::MANIFEST_FILE; }

Result<std::unique_ptr<Package>> Package::open(const std::string& dir, bool verify_checksums) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return package_error(dir, "no such package folder");
  auto pkg = std::unique_ptr<Package>(new Package());
  pkg->root_ = fs::canonical(dir, ec).string();
  if (ec) return package_error(dir, "cannot resolve the package folder (" + ec.message() + ")");
  const std::string mpath = pkg->manifest_path();
  auto manifest = parse_json(mpath, "manifest");
  if (!manifest.ok()) return manifest.error();
  pkg->manifest_ = std::move(manifest.value());
  const json& m = pkg->manifest_;
  if (!m.is_object() || m.value("schema", json()) != contract::PACKAGE_SCHEMA)
    return package_error(mpath, std::string("not a ") + contract::PACKAGE_SCHEMA + " manifest");
  const json& version = m.value("schema_version", json());
  bool readable = false;
  for (int v : contract::PACKAGE_READS_VERSIONS) readable = readable || (version.is_number_integer() && version == v);
  if (!readable) return package_error(mpath, "schema_version " + version.dump() + " is not supported by this engine");
  if (!m.contains("files") || !m["files"].is_object()) return package_error(mpath, "missing 'files'");

  // Confinement: every listed file and every referenced file is a plain relative path that
  // resolves (after symbolic links) inside the folder, and every referenced file is listed.
  const json& files = m["files"];
  const std::string root_prefix = pkg->root_ + "/";
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string& rel = it.key();
    if (!is_plain_relative(rel) || rel == contract::MANIFEST_FILE)
      return package_error(mpath, "files entry '" + rel + "' is not a path inside the package; refusing it");
    const fs::path resolved = fs::weakly_canonical(pkg->root_ + "/" + rel, ec);
    if (ec || resolved.string().rfind(root_prefix, 0) != 0)
      return package_error(pkg->root_ + "/" + rel, "resolves outside the package folder; refusing it");
  }
  std::vector<std::pair<std::string, std::string>> refs;
  collect_file_refs(m, "", refs);
  for (const auto& [key, rel] : refs) {
    if (!is_plain_relative(rel))
      return package_error(mpath, key + " = '" + rel + "' is not a path inside the package; refusing it");
    if (!files.contains(rel)) return package_error(mpath, key + " = '" + rel + "' is not listed in 'files'");
  }
  if (!files.contains(contract::TOKENIZER_FILE))
    return package_error(mpath, std::string("'files' does not list ") + contract::TOKENIZER_FILE);

  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string p = pkg->path(it.key());
    if (!fs::is_regular_file(p, ec)) return package_error(p, "listed in the manifest but missing");
    if (!verify_checksums) continue;
    const json& info = it.value();
    if (!info.is_object() || !info.value("sha256", json()).is_string() || !info.value("bytes", json()).is_number_integer())
      return package_error(mpath, "files entry '" + it.key() + "' needs 'sha256' and 'bytes'");
    const auto size = fs::file_size(p, ec);
    if (ec || size != info["bytes"].get<uint64_t>())
      return Error{ErrorCode::kChecksum, p + ": size " + std::to_string(size) + " bytes, manifest says " +
                                             info["bytes"].dump() + " (truncated or replaced)"};
    if (detail::sha256_file(p) != info["sha256"].get<std::string>())
      return Error{ErrorCode::kChecksum, p + ": sha256 mismatch (the file is corrupted or was modified)"};
  }
  if (verify_checksums) {  // like the Python reader: nothing unlisted may sit in a verified package
    for (auto entry = fs::recursive_directory_iterator(pkg->root_, ec); !ec && entry != fs::recursive_directory_iterator();
         entry.increment(ec)) {
      if (entry->is_directory()) continue;
      const std::string rel = fs::relative(entry->path(), pkg->root_).generic_string();
      if (rel != contract::MANIFEST_FILE && !files.contains(rel))
        return package_error(entry->path().string(), "not listed in the manifest");
    }
  }
  pkg->manifest_sha256_ = detail::sha256_file(mpath);
  return pkg;
}

Result<const json*> Package::at(const std::string& key_path) const {
  const json* j = &manifest_;
  std::stringstream ss(key_path);
  std::string key;
  while (std::getline(ss, key, '/')) {
    if (j->is_object() && j->contains(key)) j = &(*j)[key];
    else if (j->is_array() && !key.empty() && key.find_first_not_of("0123456789") == std::string::npos &&
             std::stoul(key) < j->size()) j = &(*j)[std::stoul(key)];
    else return package_error(manifest_path(), "missing '" + key_path + "'");
  }
  return j;
}

Result<Tensor> Package::read_tensor(const json& spec, const std::string& where) const {
  if (!spec.is_object() || !spec.value("file", json()).is_string() || !spec.value("shape", json()).is_array() ||
      !spec.value("dtype", json()).is_string())
    return package_error(manifest_path(), where + " needs 'file', 'shape' and 'dtype'");
  auto dtype = parse_dtype(spec["dtype"].get<std::string>());
  if (!dtype.ok()) return package_error(manifest_path(), where + ": " + dtype.error().message);
  Tensor t;
  t.dtype = dtype.value();
  for (const auto& d : spec["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) return package_error(manifest_path(), where + ": bad shape");
    t.shape.push_back(d.get<int64_t>());
  }
  const std::string p = path(spec["file"].get<std::string>());
  std::ifstream f(p, std::ios::binary);
  if (!f) return package_error(p, "cannot read");
  t.data.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  if (t.data.size() != size_t(t.numel()) * dtype_size(t.dtype))
    return package_error(p, "holds " + std::to_string(t.data.size()) + " bytes, manifest says " + spec["dtype"].get<std::string>() +
                                " " + spec["shape"].dump());
  return t;
}

}  // namespace mvd
