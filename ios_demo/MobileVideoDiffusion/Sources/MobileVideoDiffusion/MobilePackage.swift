import CryptoKit
import Foundation

/// An opened NAME.mobilepkg folder: its manifest, checked like the Python reader checks it (schema,
/// version, sizes, optionally every sha256, no unlisted files), and path resolution that never leaves it.
public final class MobilePackage {
    public let root: URL
    public let manifest: PackageManifest
    /// sha256 of manifest.json itself: identifies the package in benchmark results.
    public let manifestSHA256: String

    /// - Parameter verifyChecksums: hash every file (seconds for a large package); sizes are always checked.
    public init(at root: URL, verifyChecksums: Bool = true) throws {
        let root = root.standardizedFileURL
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
            throw PackageError(root, "no such package folder (a \(ContractNames.packageSuffix) folder; unzip a .zip first)")
        }
        let manifestURL = root.appendingPathComponent(ContractNames.manifestFile)
        let data: Data
        do {
            data = try Data(contentsOf: manifestURL)
        } catch {
            throw PackageError(manifestURL, "cannot read the manifest (\(error.localizedDescription)); \(root.lastPathComponent) is not a package")
        }
        self.root = root
        self.manifest = try Self.decodeManifest(data, at: manifestURL)
        self.manifestSHA256 = SHA256.hash(data: data).hexString
        try verifyFiles(checksums: verifyChecksums)
    }

    static func decodeManifest(_ data: Data, at url: URL) throws -> PackageManifest {
        let decoder = JSONDecoder()
        let header: ManifestHeader
        do {
            header = try decoder.decode(ManifestHeader.self, from: data)
        } catch {
            throw PackageError(url, "not valid JSON: \(error.localizedDescription)")
        }
        guard header.schema == ContractNames.packageSchema else {
            throw PackageError(url, "not a \(ContractNames.packageSchema) manifest")
        }
        guard let version = header.schemaVersion, ContractNames.packageReadsVersions.contains(version) else {
            throw PackageError(url, "schema_version \(header.schemaVersion.map(String.init) ?? "missing") is not supported "
                + "(this reader reads \(ContractNames.packageReadsVersions.map(String.init).joined(separator: ", ")))")
        }
        do {
            return try decoder.decode(PackageManifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw PackageError(url, "missing key \(jsonPath(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw PackageError(url, "\(jsonPath(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.valueNotFound(_, context) {
            throw PackageError(url, "\(jsonPath(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw PackageError(url, "cannot decode: \(error.localizedDescription)")
        }
    }

    static func jsonPath(_ path: [CodingKey]) -> String {
        "$" + path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }

    /// The URL of a path the manifest names. Absolute paths, backslashes, empty, '.' and '..' segments,
    /// and symbolic links that lead outside the package are refused: a manifest must not reach other files.
    public func url(for relative: String) throws -> URL {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        if relative.isEmpty || relative.hasPrefix("/") || relative.contains("\\") || relative.contains("\0")
            || parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw PackageError(root.appendingPathComponent(ContractNames.manifestFile),
                               "path \"\(relative)\" is not a relative path inside the package; refusing it")
        }
        let url = root.appendingPathComponent(relative)
        // Only an existing path can be a link; a missing one fails later with an error naming it.
        guard FileManager.default.fileExists(atPath: url.path) else { return url }
        let base = root.resolvingSymlinksInPath().path
        guard url.resolvingSymlinksInPath().path.hasPrefix(base + "/") else {
            throw PackageError(url, "resolves outside the package (a symbolic link?); refusing it")
        }
        return url
    }

    private func verifyFiles(checksums: Bool) throws {
        for (relative, entry) in manifest.files.sorted(by: { $0.key < $1.key }) {
            let url = try self.url(for: relative)
            guard let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int else {
                throw PackageError(url, "listed in the manifest but missing")
            }
            if size != entry.bytes {
                throw PackageError(url, "size \(size) bytes, manifest says \(entry.bytes) (truncated or replaced)")
            }
            if checksums, try sha256(of: url) != entry.sha256 {
                throw PackageError(url, "sha256 mismatch (the file is corrupted or was modified)")
            }
        }
        let unlisted = try listFiles().filter { manifest.files[$0] == nil }
        if let first = unlisted.first {
            throw PackageError(root.appendingPathComponent(first), "not listed in the manifest (\(unlisted.count) unlisted file(s))")
        }
    }

    /// Every regular file except manifest.json, as '/'-separated paths relative to the root.
    private func listFiles() throws -> [String] {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else {
            throw PackageError(root, "cannot list the package folder")
        }
        let prefix = root.resolvingSymlinksInPath().path + "/"
        var out: [String] = []
        for case let url as URL in walker {
            guard (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true else { continue }
            let path = url.resolvingSymlinksInPath().path
            guard path.hasPrefix(prefix) else { throw PackageError(url, "resolves outside the package; refusing it") }
            let relative = String(path.dropFirst(prefix.count))
            if relative != ContractNames.manifestFile { out.append(relative) }
        }
        return out.sorted()
    }

    /// The Core ML target, or an error saying the package was exported without it.
    public func coreMLTarget() throws -> CoreMLTarget {
        guard let target = manifest.targets.coreml else {
            throw PackageError(root.appendingPathComponent(ContractNames.manifestFile),
                               "no Core ML target; export with `mobile-sdk export --target coreml`")
        }
        return target
    }

    public func coreMLComponent(_ name: String) throws -> CoreMLComponent {
        guard let component = try coreMLTarget().components[name] else {
            throw PackageError(root.appendingPathComponent(ContractNames.manifestFile), "no Core ML component \"\(name)\"")
        }
        return component
    }

    /// The .mlpackage files of a component: one, or the chain of models that replaced it.
    public func coreMLFiles(_ name: String) throws -> [String] {
        let component = try coreMLComponent(name)
        if let chain = component.chain, !chain.isEmpty { return chain.map(\.file) }
        guard let file = component.file else {
            throw PackageError(root.appendingPathComponent(ContractNames.manifestFile), "Core ML component \"\(name)\" has neither a file nor a chain")
        }
        return [file]
    }

    /// The Core ML function that serves `entry` (a step's unet_method or a test vector's method).
    /// Version 1 named a single plan "forward" (its ExecuTorch method) while a single Core ML function is
    /// "main"; version 2 uses one name for both.
    public func coreMLFunction(component name: String, entry: String) throws -> String {
        let functions = try coreMLComponent(name).functions
        if functions[entry] != nil { return entry }
        if manifest.schemaVersion == 1, entry == "forward", functions[ContractNames.entrySingle] != nil {
            return ContractNames.entrySingle
        }
        throw PackageError(root.appendingPathComponent(ContractNames.manifestFile),
                           "Core ML component \"\(name)\" has no function \"\(entry)\" (it has \(functions.keys.sorted().joined(separator: ", ")))")
    }

    /// Identifies the compiled form of a component: a digest of the manifest's sha256 of every file in
    /// its .mlpackage(s), so a changed model is recompiled and an unchanged one never is.
    public func compiledCacheKey(component name: String) throws -> String {
        let prefixes = try coreMLFiles(name).map { $0 + "/" }
        let lines = manifest.files.keys.sorted()
            .filter { path in prefixes.contains { path.hasPrefix($0) } }
            .map { "\($0) \(manifest.files[$0]!.sha256)\n" }
        guard !lines.isEmpty else {
            throw PackageError(root.appendingPathComponent(ContractNames.manifestFile), "no files listed for Core ML component \"\(name)\"")
        }
        return SHA256.hash(data: Data(lines.joined().utf8)).hexString
    }

    /// The sha256 of the files of one component, checked before it is compiled (a cached compile was
    /// made from files that were checked then).
    func verifyChecksums(component name: String) throws {
        let prefixes = try coreMLFiles(name).map { $0 + "/" }
        for (relative, entry) in manifest.files where prefixes.contains(where: { relative.hasPrefix($0) }) {
            let url = try self.url(for: relative)
            if try sha256(of: url) != entry.sha256 {
                throw PackageError(url, "sha256 mismatch (the file is corrupted or was modified)")
            }
        }
    }

    /// Every size the package generates at, the default first (a version 1 or 2 package has one: its top level's).
    public var sizes: [PackageSize] {
        manifest.sizes ?? [PackageSize(video: manifest.video, latent: manifest.latent, steps: manifest.steps,
                                       vaeDecoderMethod: ContractNames.entrySingle)]
    }

    /// The size of these frames, height and width (nil: the default size's), or an error listing the sizes it has.
    public func size(frames: Int? = nil, height: Int? = nil, width: Int? = nil) throws -> PackageSize {
        let all = sizes
        let key = { (s: PackageSize) in [s.video.numFrames, s.video.height, s.video.width] }
        let want = zip([frames, height, width], key(all[0])).map { $0 ?? $1 }
        if let found = all.first(where: { key($0) == want }) { return found }
        let text = { (k: [Int]) in k.map(String.init).joined(separator: "x") }
        throw PackageError(root, "no size \(text(want)) (frames x height x width) in this package; it was exported for "
                           + all.map { text(key($0)) }.joined(separator: ", "))
    }

    /// The implementation tokenizer.json's type names (an unknown type is an error naming the file).
    public func tokenizer() throws -> any Tokenizer {
        try Tokenizers.load(contentsOf: url(for: manifest.tokenizer.file))
    }

    public func testVector(_ name: String) throws -> TestVector {
        guard let vector = manifest.testVectors[name] else {
            throw PackageError(root.appendingPathComponent(ContractNames.manifestFile),
                               "no test vector \"\(name)\" (it has \(manifest.testVectors.keys.sorted().joined(separator: ", ")))")
        }
        return vector
    }

    public func tensor(_ spec: TensorSpec) throws -> Tensor {
        try Tensor(contentsOf: url(for: spec.file), spec: spec)
    }
}

func sha256(of url: URL) throws -> String {
    let handle: FileHandle
    do {
        handle = try FileHandle(forReadingFrom: url)
    } catch {
        throw PackageError(url, "cannot read: \(error.localizedDescription)")
    }
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
        hasher.update(data: chunk)
    }
    return hasher.finalize().hexString
}

extension Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
