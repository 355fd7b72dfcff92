//! Differential tests: `split_array` must accept exactly what
//! `serde_json::from_slice::<Vec<Box<RawValue>>>` accepts, split it into the same texts, and
//! refuse the rest with serde_json's own message (line and column included).

use serde_json::value::RawValue;

use super::*;
use crate::element::raw::split_records;

/// Whether the first byte after JSON whitespace is `[`: for other bodies serde_json's message is
/// about the type it expected, ours says "expected an array", and only refusal must agree.
fn starts_with_bracket(doc: &[u8]) -> bool {
    doc.iter()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
        .is_some_and(|b| *b == b'[')
}

/// Asserts that both readers agree on `doc`; returns whether it was accepted.
fn agrees(doc: &[u8]) -> bool {
    let theirs = serde_json::from_slice::<Vec<Box<RawValue>>>(doc);
    let ours = split_array(doc);
    let shown = String::from_utf8_lossy(doc);
    match (theirs, ours) {
        (Ok(values), Ok(split)) => {
            let expected: Vec<&str> = values.iter().map(|v| v.get()).collect();
            let got: Vec<&str> = split
                .elements
                .iter()
                .map(|range| &split.text[range.clone()])
                .collect();
            assert_eq!(got, expected, "elements of {shown:?}");
            let records = split_records(doc).expect("split_array accepted it");
            let records: Vec<&str> = records.iter().map(|r| r.get()).collect();
            assert_eq!(records, expected, "records of {shown:?}");
            true
        }
        (Err(theirs), Err(ours)) => {
            if starts_with_bracket(doc) {
                assert_eq!(ours.to_string(), theirs.to_string(), "error for {shown:?}");
                assert_eq!(
                    (ours.line, ours.column),
                    (theirs.line(), theirs.column()),
                    "position for {shown:?}"
                );
            } else {
                assert_eq!(ours.kind, JsonErrorKind::NotAnArray, "{shown:?}");
            }
            false
        }
        (Ok(_), Err(ours)) => panic!("serde_json accepts {shown:?}, split_array says {ours}"),
        (Err(theirs), Ok(_)) => {
            panic!("serde_json refuses {shown:?} ({theirs}), split_array accepts it")
        }
    }
}

fn accepted(doc: &str) {
    assert!(agrees(doc.as_bytes()), "{doc:?} should be accepted");
}

fn refused(doc: &[u8]) {
    assert!(
        !agrees(doc),
        "{:?} should be refused",
        String::from_utf8_lossy(doc)
    );
}

#[test]
fn every_escape_and_lone_surrogates_read_as_serde_json_reads_them() {
    for escape in [
        r#"\""#,
        r"\\",
        r"\/",
        r"\b",
        r"\f",
        r"\n",
        r"\r",
        r"\t",
        r"\u0000",
        r"\u00e9",
        r"\uFFFF",
        r"\uD83D\uDE00",
        r"\ud800",
        r"\udc00",
        r"\udc00\ud800",
        r"\uD800x",
        r"\u0041\u0042",
    ] {
        accepted(&format!(r#"["{escape}"]"#));
        accepted(&format!(r#"[{{"{escape}": "{escape}{escape}"}}]"#));
    }
    for bad in [
        r"\a",
        r"\x41",
        r"\U0041",
        r"\u12",
        r"\u12G4",
        r"\u-123",
        r"\ ",
        r"\'",
        r"\0",
        r"\u",
        r"\uD83D\u",
        r"\",
        r"\u00e",
    ] {
        refused(format!(r#"["{bad}"]"#).as_bytes());
        refused(format!(r#"["abc{bad}"#).as_bytes());
    }
    // Every control byte, bare, in a string, at every offset around the eight-byte steps.
    for control in 0u8..0x20 {
        for before in 0..18 {
            let mut doc = b"[\"".to_vec();
            doc.extend(std::iter::repeat_n(b'a', before));
            doc.push(control);
            doc.extend_from_slice(b"bcdefghijk\"]");
            refused(&doc);
        }
    }
    // DEL and non-ASCII characters are plain string content.
    accepted("[\"\u{7f}é€😀\"]");
}

#[test]
fn numbers_follow_the_json_grammar() {
    let good = [
        "0",
        "-0",
        "1",
        "-1",
        "10",
        "1e5",
        "1E+5",
        "1e-5",
        "1E05",
        "0.5",
        "-0.0e-0",
        "123.456e789",
        "1e400",
        "-1e-400",
        "18446744073709551616",
        "0.000",
        "9.9E9",
    ];
    let bad = [
        "-",
        "01",
        "-01",
        "00",
        "1.",
        ".5",
        "1e",
        "1e+",
        "1E-",
        "+1",
        "1.e5",
        "-a",
        "--1",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1.5.3",
        "1e5e5",
        "1ee5",
        "0.",
        "-.5",
        "1.2e",
        "1_000",
    ];
    for number in good {
        accepted(&format!("[{number}]"));
        accepted(&format!("[ {number} , {number}]"));
        accepted(&format!(r#"[{{"n":{number}}}, [{number}]]"#));
    }
    for number in bad {
        refused(format!("[{number}]").as_bytes());
        refused(format!("[{number}").as_bytes());
        refused(format!(r#"[{{"n":{number}}}]"#).as_bytes());
        refused(format!("[[{number}]]").as_bytes());
    }
}

#[test]
fn structure_literals_and_trailing_text() {
    for doc in [
        "[]",
        " [ ] ",
        "[null,true,false]",
        "[{}]",
        "[[]]",
        "[{\"a\":{}}]",
        "[1,[2,[3]],{}]",
        "\t\r\n[\t\r\n1\t\r\n,\t\r\n{\t\r\n\"a\"\t\r\n:\t\r\n[\t\r\n]\t\r\n}\t\r\n]\t\r\n",
        r#"[{"a":1,"a":2}]"#,
        r#"[{"":""}]"#,
    ] {
        accepted(doc);
    }
    for doc in [
        "",
        " ",
        "[",
        "[ ",
        "[1",
        "[1,",
        "[1,]",
        "[,1]",
        "[,]",
        "[[1,]]",
        "[{\"a\":1,}]",
        "[{,}]",
        "[1 2]",
        "[1]]",
        "[1] x",
        "[1],",
        "[1],]",
        "[}",
        "[{]",
        "[{}",
        "[[]",
        "[{\"a\"}]",
        "[{\"a\" 1}]",
        "[{\"a\":}]",
        "[{1:2}]",
        "[{a:1}]",
        "[{'a':1}]",
        "['a']",
        "[nul]",
        "[nul",
        "[nulll]",
        "[True]",
        "[tru",
        "[fals]",
        "[null1]",
        "[truefalse]",
        "[\"a\"\"b\"]",
        "[{\"a\":1 \"b\":2}]",
        "[{\"a\":1}{}]",
        "[1]\n[2]",
        "[/* c */ 1]",
        "[1 // c\n]",
        "{\"a\":[1]}",
        "1",
        "\"[\"",
        "null",
        "[\u{c}1]",
        "[1\u{b}]",
        "\u{a0}[1]",
    ] {
        refused(doc.as_bytes());
    }
}

#[test]
fn byte_order_marks_and_unusual_whitespace_are_refused() {
    let bom = "\u{feff}";
    refused(format!("{bom}[1]").as_bytes());
    refused(format!("[{bom}1]").as_bytes());
    refused(format!("[1{bom}]").as_bytes());
    refused(format!("[1]{bom}").as_bytes());
    accepted(&format!("[\"{bom}\"]"));
    for space in ["\u{c}", "\u{b}", "\u{a0}", "\u{2028}", "\u{3000}", "\u{85}"] {
        refused(format!("[1,{space}2]").as_bytes());
        refused(format!("{space}[1]").as_bytes());
    }
    // Form feed and vertical tab are control bytes, refused inside strings too; the others are
    // ordinary characters there.
    refused(b"[\"\x0c\"]");
    refused(b"[\"\x0b\"]");
    for space in ["\u{a0}", "\u{2028}", "\u{3000}", "\u{85}"] {
        accepted(&format!("[\"{space}\"]"));
    }
}

#[test]
fn invalid_utf8_is_refused_where_serde_json_refuses_it() {
    let bad_sequences: [&[u8]; 10] = [
        b"\x80",
        b"\xbf",
        b"\xc0\x80",
        b"\xc3",
        b"\xe2\x82",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xf5",
        b"\xff",
        b"\xf0\x9f\x98",
    ];
    for bad in bad_sequences {
        let wrap = |before: &[u8], after: &[u8]| [before, bad, after].concat();
        refused(&wrap(b"[\"", b"\"]"));
        refused(&wrap(b"[{\"", b"\":1}]"));
        refused(&wrap(b"[1,\"abcdefghij", b"\"]"));
        // Outside a string a non-ASCII byte is a syntax error.
        refused(&wrap(b"[", b"]"));
        // The bad byte's element ends before the syntax error: the byte is what is reported.
        refused(&wrap(b"[\"", b"\", 1 2]"));
        refused(&wrap(b"[\"", b"\" 1]"));
        // The syntax error comes first, inside the element holding the bad byte.
        refused(&wrap(b"[[\"", b"\" 1]]"));
        refused(&wrap(b"[1, 2x, \"", b"\"]"));
        // Several lines: the position is counted in bytes on the bad byte's line.
        refused(&wrap(b"[\n1,\n\"ab", b"\",\n\"\xff\"]"));
    }
}

#[test]
fn nesting_has_no_limit_below_the_page_array_as_in_serde_json() {
    for depth in [1, 126, 127, 128, 129, 130, 1000, 20_000] {
        accepted(&format!("[{}{}]", "[".repeat(depth), "]".repeat(depth)));
        accepted(&format!(
            "[{}1{}]",
            "{\"a\":[".repeat(depth),
            "]}".repeat(depth)
        ));
        refused(format!("[{}{}]", "[".repeat(depth), "]".repeat(depth - 1)).as_bytes());
        refused(format!("[{}{}]", "{\"a\":".repeat(depth), "}".repeat(depth)).as_bytes());
    }
}

/// A page shaped like ConnectWise contacts, with some of everything a record may hold.
fn realistic_page(records: usize) -> String {
    let records: Vec<serde_json::Value> = (0..records)
        .map(|i| {
            serde_json::json!({
                "id": 1000 + i,
                "firstName": "Zoë",
                "lastName": format!("O'Brien \"the {i}th\"\\ \u{1} tab\t"),
                "company": {"id": 19, "identifier": "Ω-Corp", "name": "Ω Corp / 株式会社",
                    "_info": {"company_href": "https://example.invalid/v4_6_release/apis/3.0/company/companies/19"}},
                "defaultPhoneNbr": "555-0100",
                "inactiveFlag": false,
                "balance": -12.5e-3,
                "score": 0,
                "children": [],
                "types": [{"id": 1, "name": "Client"}, {"id": 2, "name": "🙂"}],
                "communicationItems": [
                    {"id": 7, "type": {"id": 1, "name": "Email"}, "value": "zoe@example.invalid", "defaultFlag": true},
                    {"id": 8, "type": {"id": 2, "name": "Direct"}, "value": "+1 555 0100", "defaultFlag": null}
                ],
                "_info": {"lastUpdated": "2024-01-02T03:04:05Z", "updatedBy": "bot\u{7f}"}
            })
        })
        .collect();
    serde_json::to_string(&records).unwrap()
}

#[test]
fn every_truncation_and_many_edits_of_a_realistic_page_agree() {
    for page in [
        realistic_page(2),
        serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&realistic_page(2)).unwrap(),
        )
        .unwrap(),
    ] {
        let bytes = page.as_bytes();
        assert!(agrees(bytes));
        let mut refusals = 0;
        for end in 0..bytes.len() {
            refusals += usize::from(!agrees(&bytes[..end]));
        }
        // No proper prefix of an array is a whole array.
        assert_eq!(refusals, bytes.len());
        // One byte replaced, at every position, by bytes that matter to the grammar.
        for at in 0..bytes.len() {
            for replacement in [b'"', b'\\', b',', b'}', b']', b'0', b'\n', 0x01, 0xff] {
                let mut edited = bytes.to_vec();
                edited[at] = replacement;
                agrees(&edited);
            }
        }
    }
}

/// Random valid JSON text with random whitespace, for mutation.
fn random_value(rng: &mut fastrand::Rng, depth: usize, out: &mut Vec<u8>) {
    let space = |rng: &mut fastrand::Rng, out: &mut Vec<u8>| {
        for _ in 0..rng.usize(0..3).saturating_sub(1) {
            out.push(*rng.choice(b" \t\r\n").unwrap());
        }
    };
    space(rng, out);
    let choice = if depth > 4 {
        rng.usize(0..5)
    } else {
        rng.usize(0..7)
    };
    match choice {
        0 => out.extend_from_slice(rng.choice([&b"null"[..], b"true", b"false"]).unwrap()),
        1 => {
            let number = *rng
                .choice(
                    [
                        "0", "-0", "7", "-12", "3.25", "1e5", "2E-3", "-0.5e+10", "10",
                    ]
                    .iter(),
                )
                .unwrap();
            out.extend_from_slice(number.as_bytes());
        }
        2..=4 => {
            out.push(b'"');
            for _ in 0..rng.usize(0..12) {
                let piece: &[u8] = rng
                    .choice([
                        &b"a"[..],
                        b"bcdefgh",
                        b"\\n",
                        b"\\\"",
                        b"\\\\",
                        b"\\u00e9",
                        b"\\ud800",
                        "é".as_bytes(),
                        "😀".as_bytes(),
                        b" ",
                        b"/",
                    ])
                    .unwrap();
                out.extend_from_slice(piece);
            }
            out.push(b'"');
        }
        5 => {
            out.push(b'[');
            let n = rng.usize(0..4);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                random_value(rng, depth + 1, out);
            }
            space(rng, out);
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let n = rng.usize(0..4);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                space(rng, out);
                out.extend_from_slice(
                    rng.choice([&b"\"id\""[..], b"\"k\\u0041\"", b"\"\""])
                        .unwrap(),
                );
                space(rng, out);
                out.push(b':');
                random_value(rng, depth + 1, out);
            }
            space(rng, out);
            out.push(b'}');
        }
    }
    space(rng, out);
}

#[test]
fn random_documents_and_their_mutations_agree() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0f15);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..30_000 {
        let mut doc = b"[".to_vec();
        for i in 0..rng.usize(0..4) {
            if i > 0 {
                doc.push(b',');
            }
            random_value(&mut rng, 1, &mut doc);
        }
        doc.push(b']');
        for _ in 0..rng.usize(0..3) {
            let at = rng.usize(0..=doc.len());
            let byte = *rng
                .choice(b"[]{},:\"\\ -.0eEu1nt\x01\x80\xff".iter())
                .unwrap();
            match rng.u8(0..3) {
                0 => doc.insert(at, byte),
                1 if at < doc.len() => {
                    doc.remove(at);
                }
                _ if at < doc.len() => doc[at] = byte,
                _ => {}
            }
        }
        if agrees(&doc) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both outcomes must be well represented for the comparison to mean something.
    assert!(
        accepted > 5_000 && refused > 5_000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn string_runs_end_at_the_first_stop_byte_whatever_the_offset() {
    for len in 0..40 {
        for stop in [b'"', b'\\', 0x00, 0x1f, 0x0a] {
            for at in 0..len {
                let mut bytes = vec![b'x'; len];
                bytes[at] = stop;
                // A second stop further on must not hide the first.
                if at + 3 < len {
                    bytes[at + 3] = b'"';
                }
                assert_eq!(plain_run_end(&bytes, 0), at, "{bytes:?}");
            }
            assert_eq!(plain_run_end(&vec![0x20; len], 0), len);
            assert_eq!(plain_run_end(&vec![0xff; len], 0), len);
            assert_eq!(plain_run_end(&vec![0x7f; len], 0), len);
        }
    }
}

#[test]
fn every_byte_value_is_classified_at_every_position_of_a_chunk() {
    let is_stop = |byte: u8| byte == b'"' || byte == b'\\' || byte < 0x20;
    for byte in 0..=255u8 {
        for at in 0..16 {
            let mut chunk = [b'x'; 24];
            chunk[at] = byte;
            let expected = if is_stop(byte) { at } else { chunk.len() };
            assert_eq!(
                plain_run_end(&chunk, 0),
                expected,
                "byte {byte:#04x} at {at}"
            );
            if at < 8 {
                let word = u64::from_le_bytes(chunk[..8].try_into().unwrap());
                let lowest = string_stops(word).trailing_zeros() as usize / 8;
                assert_eq!(lowest.min(8), expected.min(8), "byte {byte:#04x} at {at}");
            }
        }
    }
}
