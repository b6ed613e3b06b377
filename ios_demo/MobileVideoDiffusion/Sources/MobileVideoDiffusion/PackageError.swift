import Foundation

/// Every failure names the file (or the package folder) it is about, so a user can find what to fix.
public struct PackageError: LocalizedError, CustomStringConvertible {
    /// The file or folder the problem is in.
    public let path: String
    public let message: String

    public init(_ url: URL, _ message: String) {
        self.path = url.path
        self.message = message
    }

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
    public var errorDescription: String? { description }
}

/// Raised when the caller stops a generation: Task cancellation or a progress handler returning false.
public struct GenerationCancelled: LocalizedError {
    public let afterStep: Int
    public let of: Int
    public var errorDescription: String? { "generation cancelled after step \(afterStep) of \(of)" }
}
