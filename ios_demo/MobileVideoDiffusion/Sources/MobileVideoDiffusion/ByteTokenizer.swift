import Foundation

/// The SDK's byte tokenizer (mobile_sdk/models/text_encoder.py): UTF-8 bytes shifted by `byteOffset`
/// between BOS and EOS, truncated to keep EOS, padded to `maxLength`. No vocabulary file is needed.
/// - Contract: tokenizer $
public struct ByteTokenizer: Decodable {
    /// Absent before the SDK wrote it: version 1.
    public let version: Int?
    public let type: String
    public let maxLength: Int
    public let padId: Int
    public let bosId: Int
    public let eosId: Int
    public let byteOffset: Int

    enum CodingKeys: String, CodingKey {
        case version, type
        case maxLength = "max_length"
        case padId = "pad_id"
        case bosId = "bos_id"
        case eosId = "eos_id"
        case byteOffset = "byte_offset"
    }

    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw PackageError(url, "cannot read the tokenizer: \(error.localizedDescription)")
        }
        do {
            self = try JSONDecoder().decode(ByteTokenizer.self, from: data)
        } catch {
            throw PackageError(url, "not a tokenizer spec: \(error.localizedDescription)")
        }
        guard (version ?? 1) == 1 else { throw PackageError(url, "tokenizer version \(version ?? 1) is not supported (this reader reads 1)") }
        guard type == ContractNames.tokenizerByte else {
            throw PackageError(url, "tokenizer type \"\(type)\" is not supported (this reader knows \"\(ContractNames.tokenizerByte)\")")
        }
        guard maxLength >= 2 else { throw PackageError(url, "max_length \(maxLength) leaves no room for BOS and EOS") }
    }

    /// `maxLength` ids. Truncation is by bytes, as in Python, so it may split a multi-byte character.
    public func encode(_ text: String) -> [Int] {
        let body = text.utf8.prefix(maxLength - 2).map { byteOffset + Int($0) }
        let ids = [bosId] + body + [eosId]
        return ids + Array(repeating: padId, count: maxLength - ids.count)
    }
}
