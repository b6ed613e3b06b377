import Foundation

/// Prompt -> the text encoder's `input_ids`. Which implementation a package needs is its tokenizer.json's
/// `type` (ContractNames.tokenizerByte, ContractNames.tokenizerClipBpe); `Tokenizers.load` picks it.
public protocol Tokenizer {
    var maxLength: Int { get }
    /// Exactly `maxLength` ids: BOS, the prompt's ids cut to `maxLength - 2`, EOS, padding.
    func encode(_ text: String) -> [Int]
}

/// What every tokenizer.json says before its type's own keys: the version to refuse a newer document
/// with, and the type that picks the implementation.
/// - Contract: tokenizer $
struct TokenizerHeader: Decodable {
    /// Absent before the SDK wrote it: version 1.
    let version: Int?
    let type: String
}

public enum Tokenizers {
    /// The tokenizer that the tokenizer.json at `url` describes; an unknown version or type is an error
    /// naming the file.
    public static func load(contentsOf url: URL) throws -> any Tokenizer {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw PackageError(url, "cannot read the tokenizer: \(error.localizedDescription)")
        }
        let header = try decode(TokenizerHeader.self, from: data, at: url)
        let version = header.version ?? 1
        guard ContractNames.tokenizerReadsVersions.contains(version) else {
            throw PackageError(url, "tokenizer version \(version) is not supported "
                + "(this reader reads \(ContractNames.tokenizerReadsVersions.map(String.init).joined(separator: ", ")))")
        }
        switch header.type {
        case ContractNames.tokenizerByte:
            return try ByteTokenizer(json: data, at: url)
        case ContractNames.tokenizerClipBpe:
            return try CLIPTokenizer(json: data, at: url)
        default:
            throw PackageError(url, "tokenizer type \"\(header.type)\" is not supported "
                + "(this reader knows \"\(ContractNames.tokenizerByte)\" and \"\(ContractNames.tokenizerClipBpe)\")")
        }
    }

    /// `type` decoded from tokenizer.json, or an error naming the file and the JSON path at fault.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, at url: URL) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw PackageError(url, "not a tokenizer spec: missing key \(MobilePackage.jsonPath(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw PackageError(url, "not a tokenizer spec: \(MobilePackage.jsonPath(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.valueNotFound(_, context) {
            throw PackageError(url, "not a tokenizer spec: \(MobilePackage.jsonPath(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw PackageError(url, "not a tokenizer spec: \(error.localizedDescription)")
        }
    }
}
