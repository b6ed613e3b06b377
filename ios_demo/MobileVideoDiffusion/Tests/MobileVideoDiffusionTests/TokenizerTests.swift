import Foundation
import XCTest
@testable import MobileVideoDiffusion

/// The prompts and ids a clip_bpe tokenizer.json records: test vectors for an app's tokenizer.
/// - Contract: tokenizer $
struct TokenizerExamples: Decodable {
    let examples: [Example]?

    /// - Contract: tokenizer $.examples[*]
    struct Example: Decodable {
        let text: String
        let ids: [Int]
    }

    init(contentsOf url: URL) throws {
        self = try JSONDecoder().decode(TokenizerExamples.self, from: Data(contentsOf: url))
    }
}

func assertReproduces(_ tokenizer: any Tokenizer, _ examples: [TokenizerExamples.Example], file: StaticString = #filePath, line: UInt = #line) {
    for example in examples {
        // The scalars' code points name the prompt unambiguously (NFD and NFC print alike).
        let codePoints = example.text.unicodeScalars.prefix(40).map { String($0.value, radix: 16) }.joined(separator: " ")
        XCTAssertEqual(tokenizer.encode(example.text), example.ids, "prompt U+[\(codePoints)]", file: file, line: line)
    }
}

/// The tokenizers without a package. Fixtures/clip_bpe_tokenizer.json is a tokenizer.json that
/// mobile_sdk/clip_tokenizer.py wrote (a small BPE learnt on a short corpus; its examples are the SDK's
/// example prompts and prompts aimed at each normalisation and splitting rule); tests/test_ios_demo.py
/// fails when it is no longer what the Python tokenizer writes.
final class TokenizerTests: XCTestCase {
    private func fixture() throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "clip_bpe_tokenizer", withExtension: "json", subdirectory: "Fixtures"))
    }

    private func scratchTokenizer(_ spec: [String: Any]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: spec).write(to: url)
        return url
    }

    func testCLIPTokenizerReproducesThePythonIds() throws {
        let tokenizer = try Tokenizers.load(contentsOf: fixture())
        XCTAssertTrue(tokenizer is CLIPTokenizer, "\(type(of: tokenizer))")
        let examples = try XCTUnwrap(TokenizerExamples(contentsOf: fixture()).examples)
        XCTAssertGreaterThanOrEqual(examples.count, 20)
        assertReproduces(tokenizer, examples)
    }

    func testByteCharactersAreGPT2s() {
        let table = CLIPText.byteCharacters
        XCTAssertEqual(Set(table).count, 256)
        XCTAssertEqual(table[0x21], "!")
        XCTAssertEqual(table[0xFF], "\u{FF}")
        XCTAssertEqual(table[0x00], "\u{100}")
        XCTAssertEqual(table[0x20], "\u{120}", "space is Ġ")
        XCTAssertEqual(table[0xAD], "\u{143}", "the last byte that is not printable")
    }

    /// What Swift's Unicode data gives the steps the Python tests cannot reach here.
    func testNormalisationAndCategories() {
        func normalized(_ text: String) -> String { CLIPText.string(CLIPText.normalize(Array(text.unicodeScalars)[...])) }
        XCTAssertEqual(normalized("\u{130}"), "i\u{307}", "full lower-case mapping")
        XCTAssertEqual(normalized("ΣΑΣ"), "σασ", "no final-sigma rule")
        XCTAssertEqual(Array(normalized("e\u{301}").unicodeScalars), ["\u{E9}"], "NFC")
        XCTAssertEqual(normalized(" a \t\u{3000}\u{A0}b\n"), " a b ")
        XCTAssertEqual(CLIPText.kind("\u{1C5}"), .letter, "titlecase letter ǅ")
        XCTAssertEqual(CLIPText.kind("\u{2167}"), .number, "letter number Ⅷ")
        XCTAssertEqual(CLIPText.kind("\u{B2}"), .number, "other number ²")
        XCTAssertEqual(CLIPText.kind("\u{301}"), .other, "a combining mark is neither letter nor number")
        XCTAssertEqual(CLIPText.kind("\u{200B}"), .other, "zero width space is not White_Space")
        let words = CLIPText.words(Array("it's 12ab<|endoftext|>..".unicodeScalars)).map { CLIPText.string($0) }
        XCTAssertEqual(words, ["it", "'s", "1", "2", "ab", "<|", "endoftext", "|>", ".."])
    }

    func testByteTokenizerOfEitherVersion() throws {
        for version in ContractNames.tokenizerReadsVersions {
            let url = try scratchTokenizer(["format": "mobile-sdk-tokenizer", "version": version, "type": ContractNames.tokenizerByte,
                                            "max_length": 6, "pad_id": 0, "bos_id": 1, "eos_id": 2, "byte_offset": 3])
            XCTAssertEqual(try Tokenizers.load(contentsOf: url).encode("ab"), [1, 100, 101, 2, 0, 0])
        }
    }

    func testUnknownTypeAndVersionAreRefusedNamingTheFile() throws {
        let base: [String: Any] = ["format": "mobile-sdk-tokenizer", "version": 2, "max_length": 8, "pad_id": 0, "bos_id": 1, "eos_id": 2]
        let unknown = try scratchTokenizer(base.merging(["type": "sentencepiece"]) { $1 })
        XCTAssertThrowsError(try Tokenizers.load(contentsOf: unknown)) { error in
            XCTAssertTrue("\(error)".contains(unknown.path), "\(error)")
            XCTAssertTrue("\(error)".contains("\"sentencepiece\""), "\(error)")
        }
        let newer = try scratchTokenizer(base.merging(["type": ContractNames.tokenizerByte, "version": 99, "byte_offset": 3]) { $1 })
        XCTAssertThrowsError(try Tokenizers.load(contentsOf: newer)) { error in
            XCTAssertTrue("\(error)".contains(newer.path) && "\(error)".contains("version 99"), "\(error)")
        }
    }

    func testMalformedCLIPSpecsAreRefusedNamingTheProblem() throws {
        var spec = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixture())) as? [String: Any])
        spec["merges"] = ["a b", "ab"]
        let badMerge = try scratchTokenizer(spec)
        XCTAssertThrowsError(try Tokenizers.load(contentsOf: badMerge)) { error in
            XCTAssertTrue("\(error)".contains("merges[1]"), "\(error)")
        }
        spec.removeValue(forKey: "vocab")
        let noVocab = try scratchTokenizer(spec)
        XCTAssertThrowsError(try Tokenizers.load(contentsOf: noVocab)) { error in
            XCTAssertTrue("\(error)".contains(noVocab.path) && "\(error)".contains("vocab"), "\(error)")
        }
    }
}
