import Foundation

/// The SDK's byte tokenizer (mobile_sdk/models/text_encoder.py): UTF-8 bytes shifted by `byteOffset`
/// between BOS and EOS, truncated to keep EOS, padded to `maxLength`. No vocabulary file is needed.
/// - Contract: tokenizer $
public struct ByteTokenizer: Tokenizer, Decodable {
    public let maxLength: Int
    public let padId: Int
    public let bosId: Int
    public let eosId: Int
    public let byteOffset: Int

    enum CodingKeys: String, CodingKey {
        case maxLength = "max_length"
        case padId = "pad_id"
        case bosId = "bos_id"
        case eosId = "eos_id"
        case byteOffset = "byte_offset"
    }

    /// tokenizer.json of this type (`Tokenizers.load` has checked its version and type).
    init(json data: Data, at url: URL) throws {
        self = try Tokenizers.decode(ByteTokenizer.self, from: data, at: url)
        guard maxLength >= 2 else { throw PackageError(url, "max_length \(maxLength) leaves no room for BOS and EOS") }
    }

    /// `maxLength` ids. Truncation is by bytes, as in Python, so it may split a multi-byte character.
    public func encode(_ text: String) -> [Int] {
        let body = text.utf8.prefix(maxLength - 2).map { byteOffset + Int($0) }
        let ids = [bosId] + body + [eosId]
        return ids + Array(repeating: padId, count: maxLength - ids.count)
    }
}
