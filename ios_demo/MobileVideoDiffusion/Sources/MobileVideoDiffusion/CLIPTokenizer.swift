import Foundation

/// tokenizer.json of type clip_bpe (tokenizer.v2.schema.json): the vocabulary and merges of CLIP's BPE.
/// - Contract: tokenizer $
struct CLIPTokenizerSpec: Decodable {
    let maxLength: Int
    let bosId: Int
    let eosId: Int
    let padId: Int
    let unkId: Int
    let endOfWordSuffix: String
    let vocab: [String: Int]
    let merges: [String]

    enum CodingKeys: String, CodingKey {
        case vocab, merges
        case maxLength = "max_length"
        case bosId = "bos_id"
        case eosId = "eos_id"
        case padId = "pad_id"
        case unkId = "unk_id"
        case endOfWordSuffix = "end_of_word_suffix"
    }
}

/// CLIP's byte-level BPE (SD-1.5's text encoder): the ids of mobile_sdk/clip_tokenizer.py, step by step
/// as tokenizer.v2.schema.json spells them (CLIPText below holds steps 1 and 2).
///
/// Symbols are Strings of bytes_to_unicode characters (U+0021...U+0143, no combining marks, so Swift's
/// canonical-equivalence String comparison is plain equality on them). The prompt itself is handled as
/// Unicode scalars, like Python's str: String and Character would match and split by grapheme clusters.
public struct CLIPTokenizer: Tokenizer {
    public let maxLength: Int
    public let bosId: Int
    public let eosId: Int
    public let padId: Int
    public let unkId: Int
    let vocab: [String: Int]
    /// "left right" -> its index in merges; a repeated pair keeps its last index, as in Python.
    let ranks: [String: Int]

    init(json data: Data, at url: URL) throws {
        let spec = try Tokenizers.decode(CLIPTokenizerSpec.self, from: data, at: url)
        guard spec.maxLength >= 2 else { throw PackageError(url, "max_length \(spec.maxLength) leaves no room for BOS and EOS") }
        guard spec.endOfWordSuffix == CLIPText.endOfWord else {
            throw PackageError(url, "end_of_word_suffix \"\(spec.endOfWordSuffix)\" is not supported (this reader implements \"\(CLIPText.endOfWord)\")")
        }
        guard !spec.vocab.isEmpty else { throw PackageError(url, "vocab is empty") }
        if let bad = spec.vocab.first(where: { $0.value < 0 }) {
            throw PackageError(url, "vocab entry \"\(bad.key)\" has the negative id \(bad.value)")
        }
        for (key, id) in [("bos_id", spec.bosId), ("eos_id", spec.eosId), ("pad_id", spec.padId), ("unk_id", spec.unkId)] where id < 0 {
            throw PackageError(url, "\(key) \(id) is negative")
        }
        var ranks: [String: Int] = [:]
        ranks.reserveCapacity(spec.merges.count)
        for (rank, merge) in spec.merges.enumerated() {
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw PackageError(url, "merges[\(rank)] \"\(merge)\" is not 'left right'")
            }
            ranks[merge] = rank
        }
        self.maxLength = spec.maxLength
        self.bosId = spec.bosId
        self.eosId = spec.eosId
        self.padId = spec.padId
        self.unkId = spec.unkId
        self.vocab = spec.vocab
        self.ranks = ranks
    }

    /// Step 4: BOS, the words' ids cut to `maxLength - 2`, EOS, then padding.
    public func encode(_ text: String) -> [Int] {
        let ids = [bosId] + bodyIds(Array(text.unicodeScalars), limit: maxLength - 2) + [eosId]
        return ids + Array(repeating: padId, count: maxLength - ids.count)
    }

    /// Step 0: the special tokens' exact texts are their ids; the text between them goes through steps 1
    /// to 3 on its own. Stops once `limit` ids are known: later words would be cut anyway.
    func bodyIds(_ text: [Unicode.Scalar], limit: Int) -> [Int] {
        var ids: [Int] = []
        var start = 0
        while start <= text.count, ids.count < limit {
            var hit = text.count
            var special: [Unicode.Scalar]?
            for literal in CLIPText.specialLiterals {
                if let at = CLIPText.firstIndex(of: literal, in: text, from: start), at < hit {
                    hit = at
                    special = literal
                }
            }
            for word in CLIPText.words(CLIPText.normalize(text[start..<hit])) {
                if ids.count >= limit { break }
                ids += wordIds(word)
            }
            guard let special else { break }
            ids.append(vocab[CLIPText.string(special[...])] ?? unkId)
            start = hit + special.count
        }
        return Array(ids.prefix(limit))
    }

    /// Step 3: the word's UTF-8 bytes as bytes_to_unicode characters, `</w>` on the last; then the
    /// adjacent pair of lowest rank (the leftmost on ties) is merged until no pair has a rank.
    func wordIds(_ word: ArraySlice<Unicode.Scalar>) -> [Int] {
        var symbols = CLIPText.string(word).utf8.map { CLIPText.byteCharacters[Int($0)] }
        symbols[symbols.count - 1] += CLIPText.endOfWord
        func rank(_ i: Int) -> Int { ranks[symbols[i] + " " + symbols[i + 1]] ?? Int.max }
        var pairRanks = (0..<(symbols.count - 1)).map(rank)  // pairRanks[i]: symbols i and i + 1
        while let best = pairRanks.indices.min(by: { (pairRanks[$0], $0) < (pairRanks[$1], $1) }), pairRanks[best] != Int.max {
            let right = symbols.remove(at: best + 1)
            symbols[best] += right
            pairRanks.remove(at: best)
            if best > 0 { pairRanks[best - 1] = rank(best - 1) }
            if best < pairRanks.count { pairRanks[best] = rank(best) }
        }
        return symbols.map { vocab[$0] ?? unkId }
    }
}

/// Steps 1 and 2 of the clip_bpe tokenizer, and its constant tables. tests/test_ios_demo.py reads the
/// tables below out of this file and compares them with mobile_sdk/clip_tokenizer.py.
enum CLIPText {
    static let endOfWord = "</w>"
    static let specialLiterals: [[Unicode.Scalar]] = ["<|startoftext|>", "<|endoftext|>"].map { Array($0.unicodeScalars) }
    static let contractions: [[Unicode.Scalar]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }
    /// The Unicode White_Space property (PropList.txt), as the schema lists it.
    static let whiteSpace: [ClosedRange<UInt32>] = [0x09...0x0D, 0x20...0x20, 0x85...0x85, 0xA0...0xA0, 0x1680...0x1680,
                                                    0x2000...0x200A, 0x2028...0x2029, 0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000]
    /// GPT-2's bytes_to_unicode: these bytes are their own character; the others are U+0100, U+0101, ...
    /// in byte order.
    static let printableBytes: [ClosedRange<UInt8>] = [0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF]
    static let byteCharacters: [String] = {
        var table: [String] = []
        var extra: UInt32 = 0x100
        for byte in UInt8.min...UInt8.max {
            if printableBytes.contains(where: { $0.contains(byte) }) {
                table.append(String(Character(Unicode.Scalar(byte))))
            } else {
                table.append(String(Character(Unicode.Scalar(extra)!)))
                extra += 1
            }
        }
        return table
    }()

    enum Kind { case space, letter, number, other }

    static func isWhiteSpace(_ scalar: Unicode.Scalar) -> Bool {
        whiteSpace.contains { $0.contains(scalar.value) }
    }

    /// Letters are general category L*, numbers N*: the classes of CLIP's pattern \p{L} and \p{N}.
    static func kind(_ scalar: Unicode.Scalar) -> Kind {
        if isWhiteSpace(scalar) { return .space }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Step 1: NFC; each run of White_Space becomes one space; each scalar lower-cased by itself (its
    /// full Lowercase_Mapping, no context rules: Σ is always σ).
    static func normalize(_ text: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        var inSpace = false
        for scalar in string(text).precomposedStringWithCanonicalMapping.unicodeScalars {
            let space = isWhiteSpace(scalar)
            if space && !inSpace { out.append(" ") }
            if !space { out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars) }
            inSpace = space
        }
        return out
    }

    /// Step 2: the words of normalised text, scanning left to right: a special literal (as the three words
    /// "<|", its letters, "|>"), a contraction, a run of letters, one number, or a run of other characters;
    /// white space separates words and is dropped.
    static func words(_ text: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var i = 0
        scan: while i < text.count {
            for literal in specialLiterals where hasPrefix(text, literal, at: i) {
                let end = i + literal.count
                words += [text[i..<(i + 2)], text[(i + 2)..<(end - 2)], text[(end - 2)..<end]]
                i = end
                continue scan
            }
            for contraction in contractions where hasPrefix(text, contraction, at: i) {
                words.append(text[i..<(i + contraction.count)])
                i += contraction.count
                continue scan
            }
            let k = kind(text[i])
            if k == .space {
                i += 1
                continue
            }
            var j = i + 1
            if k != .number {
                while j < text.count, kind(text[j]) == k { j += 1 }
            }
            words.append(text[i..<j])
            i = j
        }
        return words
    }

    static func hasPrefix(_ text: [Unicode.Scalar], _ prefix: [Unicode.Scalar], at i: Int) -> Bool {
        i + prefix.count <= text.count && text[i..<(i + prefix.count)].elementsEqual(prefix)
    }

    static func firstIndex(of literal: [Unicode.Scalar], in text: [Unicode.Scalar], from start: Int) -> Int? {
        guard start + literal.count <= text.count else { return nil }
        return (start...(text.count - literal.count)).first { hasPrefix(text, literal, at: $0) }
    }

    static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
