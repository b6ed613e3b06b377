import CoreML
import Foundation

/// Compiled models (.mlmodelc) kept in Application Support between launches. A package ships
/// .mlpackage files, which Core ML must compile before loading; that takes seconds per component, so
/// it is done once per distinct model: the key is a digest of the manifest's sha256 of its files.
public struct CompiledModelCache {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    /// <Application Support>/MobileVideoDiffusion/CompiledModels, excluded from iCloud backup (it can
    /// always be rebuilt from the package).
    public static func applicationSupport() throws -> CompiledModelCache {
        let base = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        var directory = base.appendingPathComponent("MobileVideoDiffusion/CompiledModels", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var values = URLResourceValues()
        values.isExcludedFromBackup = true
        try directory.setResourceValues(values)
        return CompiledModelCache(directory: directory)
    }

    /// The compiled models of a component (one, or one per chained part), compiling what is missing.
    /// Files are checked against their sha256 before compiling, since the cache trusts what it holds.
    public func compiledModels(for package: MobilePackage, component: String) async throws -> [URL] {
        let key = try package.compiledCacheKey(component: component)
        let files = try package.coreMLFiles(component)
        let folder = directory.appendingPathComponent(key, isDirectory: true)
        let targets = files.map { folder.appendingPathComponent(($0 as NSString).lastPathComponent.replacingOccurrences(of: ContractNames.coremlSuffix, with: ".mlmodelc")) }
        if targets.allSatisfy({ FileManager.default.fileExists(atPath: $0.path) }) {
            return targets
        }
        try package.verifyChecksums(component: component)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (file, target) in zip(files, targets) where !FileManager.default.fileExists(atPath: target.path) {
            let source = try package.url(for: file)
            let compiled: URL
            do {
                compiled = try await MLModel.compileModel(at: source)
            } catch {
                throw PackageError(source, "Core ML could not compile it: \(error.localizedDescription)")
            }
            // Move into place under a temporary name, then rename: an interrupted launch leaves no
            // half-written model that a later launch would take for a finished one.
            let partial = folder.appendingPathComponent(".partial-\(UUID().uuidString)")
            try FileManager.default.moveItem(at: compiled, to: partial)
            do {
                try FileManager.default.moveItem(at: partial, to: target)
            } catch {
                try? FileManager.default.removeItem(at: partial)
                // Another task may have finished the same model first; anything else is a real failure.
                guard FileManager.default.fileExists(atPath: target.path) else {
                    throw PackageError(target, "cannot store the compiled model: \(error.localizedDescription)")
                }
            }
        }
        return targets
    }
}
