//! Object keys on the way in and out: decoding the form-URL-encoded keys that S3 puts in its
//! notifications, encoding `CopySource` for the copy request, and mapping a source key to its
//! destination key.
//!
//! S3 notifications carry keys form-URL-encoded (`red flower.jpg` arrives as `red+flower.jpg`, a
//! literal `+` as `%2B`), and so do listings asked for `EncodingType=url`; EventBridge sends them
//! raw; Batch Operations manifests may percent-encode them. `CopySource` must be percent-encoded
//! again on the way out. Every place that touches a raw key goes through this module.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The longest key S3 accepts, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Characters left as they are in an encoded `CopySource`: RFC 3986 unreserved characters and
/// the `/` that separates key segments.
const COPY_SOURCE_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Why a key from an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid percent-escape at byte {position} of the encoded key")]
    InvalidEscape { position: usize },
    /// The decoded bytes are not UTF-8, so they cannot name an S3 object.
    #[error("the decoded key is not valid UTF-8")]
    InvalidUtf8,
    /// S3 never sends an empty key for an object.
    #[error("the key is empty")]
    Empty,
}

/// Decodes a key as S3 writes it into event notifications (`application/x-www-form-urlencoded`:
/// `+` is a space, `%XX` an escaped byte), and into listings asked for `EncodingType=url`.
/// Malformed escapes are refused rather than passed on, since a key that was mangled on the way
/// cannot be trusted to name the right object.
pub fn decode_event_key(encoded: &str) -> Result<String, KeyError> {
    decode(encoded, true)
}

/// Decodes a percent-encoded key (RFC 3986: `%XX` an escaped byte, `+` a plus sign), as S3
/// Batch Operations manifests may carry them.
pub fn decode_percent_key(encoded: &str) -> Result<String, KeyError> {
    decode(encoded, false)
}

/// The readings of a Batch Operations task's `s3Key`, in the order to try them: percent-decoded
/// (`+` stays `+`), form-decoded (`+` is a space), then as received. Readings that cannot be
/// decoded, and repeats, are left out; the key as received is always among them.
pub fn batch_key_readings(s3_key: &str) -> Result<Vec<String>, KeyError> {
    if s3_key.is_empty() {
        return Err(KeyError::Empty);
    }
    let mut readings: Vec<String> = Vec::with_capacity(3);
    let candidates = [
        decode_percent_key(s3_key).ok(),
        decode_event_key(s3_key).ok(),
        Some(s3_key.to_string()),
    ];
    for reading in candidates.into_iter().flatten() {
        if !readings.contains(&reading) {
            readings.push(reading);
        }
    }
    Ok(readings)
}

fn decode(encoded: &str, plus_is_space: bool) -> Result<String, KeyError> {
    if encoded.is_empty() {
        return Err(KeyError::Empty);
    }
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => {
                decoded.push(b' ');
                i += 1;
            }
            b'%' => {
                let high = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let low = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                match (high, low) {
                    (Some(h), Some(l)) => decoded.push((h * 16 + l) as u8),
                    _ => return Err(KeyError::InvalidEscape { position: i }),
                }
                i += 3;
            }
            other => {
                decoded.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| KeyError::InvalidUtf8)
}

/// A key (or common prefix) from a listing asked for `EncodingType=url`, which is how a
/// listing carries keys that XML 1.0 cannot (control characters such as `\x04`). A text that is
/// not valid encoding (a server that ignored the request) is taken as it is.
pub fn decode_listed_key(encoded: &str) -> String {
    decode_event_key(encoded).unwrap_or_else(|_| encoded.to_string())
}

/// Builds the `CopySource` value (`bucket/key`, key percent-encoded, `/` kept) for a copy of
/// the current version of `key` in `bucket`.
pub fn encode_copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE_KEEP))
}

/// Maps a source key to its key in the destination bucket (`prefix` + `key`), refusing a
/// result longer than S3 allows.
pub fn destination_key(prefix: &str, key: &str) -> Result<String, String> {
    let mapped = format!("{prefix}{key}");
    if mapped.len() > MAX_KEY_BYTES {
        return Err(format!(
            "destination key would be {} bytes (prefix {} + key {}); S3 allows at most {MAX_KEY_BYTES}",
            mapped.len(),
            prefix.len(),
            key.len()
        ));
    }
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_listed_keys_including_control_characters() {
        assert_eq!(
            decode_listed_key("ctl%04%20key%2Bplus%25.txt"),
            "ctl\u{4} key+plus%.txt"
        );
        // S3 encodes a space as `+` in listings.
        assert_eq!(decode_listed_key("a+b"), "a b");
        assert_eq!(decode_listed_key(""), "");
    }

    #[test]
    fn batch_keys_are_read_percent_decoded_then_form_decoded_then_raw() {
        assert_eq!(
            batch_key_readings("a+b%20c").unwrap(),
            vec!["a+b c", "a b c", "a+b%20c"]
        );
        // Nothing to decode: one reading.
        assert_eq!(
            batch_key_readings("plain/key.txt").unwrap(),
            vec!["plain/key.txt"]
        );
        // A `%` that is no escape: only the raw reading is left.
        assert_eq!(batch_key_readings("100% sure").unwrap(), vec!["100% sure"]);
        // A space arrives as it is, and `+` may be either.
        assert_eq!(
            batch_key_readings("c++ notes").unwrap(),
            vec!["c++ notes", "c   notes"]
        );
        assert_eq!(batch_key_readings(""), Err(KeyError::Empty));
    }

    #[test]
    fn decodes_plus_as_space_and_escaped_plus_as_plus() {
        assert_eq!(
            decode_event_key("red+flower.jpg").unwrap(),
            "red flower.jpg"
        );
        assert_eq!(decode_event_key("c%2B%2B+notes").unwrap(), "c++ notes");
    }

    #[test]
    fn decodes_escaped_percent_and_literal_escape_text() {
        // A key that literally contains "%2B" arrives as "%252B".
        assert_eq!(
            decode_event_key("100%25+sure%252B").unwrap(),
            "100% sure%2B"
        );
    }

    #[test]
    fn decodes_multibyte_utf8_and_slashes() {
        assert_eq!(
            decode_event_key("f%C3%BCr%2F%E6%97%A5%E6%9C%AC/x").unwrap(),
            "für/日本/x"
        );
    }

    #[test]
    fn decodes_upper_and_lower_case_hex() {
        assert_eq!(decode_event_key("%3a%3A").unwrap(), "::");
    }

    #[test]
    fn refuses_truncated_or_invalid_escapes() {
        assert_eq!(
            decode_event_key("abc%"),
            Err(KeyError::InvalidEscape { position: 3 })
        );
        assert_eq!(
            decode_event_key("a%zz"),
            Err(KeyError::InvalidEscape { position: 1 })
        );
        assert_eq!(
            decode_event_key("a%4"),
            Err(KeyError::InvalidEscape { position: 1 })
        );
    }

    #[test]
    fn refuses_invalid_utf8_after_decoding() {
        assert_eq!(decode_event_key("%C3"), Err(KeyError::InvalidUtf8));
        assert_eq!(decode_event_key("%FF%FE"), Err(KeyError::InvalidUtf8));
    }

    #[test]
    fn refuses_empty_key() {
        assert_eq!(decode_event_key(""), Err(KeyError::Empty));
    }

    #[test]
    fn encodes_copy_source_keeping_slashes_and_unreserved() {
        assert_eq!(
            encode_copy_source("src", "a b/c+d%e?f&g#h=i~j_k-l.m"),
            "src/a%20b/c%2Bd%25e%3Ff%26g%23h%3Di~j_k-l.m"
        );
        assert_eq!(encode_copy_source("src", "/lead//x/"), "src//lead//x/");
        assert_eq!(encode_copy_source("src", "für"), "src/f%C3%BCr");
    }

    #[test]
    fn round_trips_encoded_copy_source_through_decoding() {
        for key in ["a b", "x+y", "%2B", "日本/語?&#=", "//x/", "~._-"] {
            let encoded = encode_copy_source("b", key);
            let decoded = decode_event_key(&encoded.replace('+', "%2B")).unwrap();
            assert_eq!(decoded, format!("b/{key}"));
        }
    }

    #[test]
    fn maps_destination_key_with_prefix_and_enforces_length() {
        assert_eq!(destination_key("replica/", "a/b").unwrap(), "replica/a/b");
        assert_eq!(destination_key("", "a").unwrap(), "a");
        let key = "k".repeat(1020);
        assert!(destination_key("abcd", &key).is_ok());
        let err = destination_key("abcde", &key).unwrap_err();
        assert!(err.contains("1025 bytes"), "{err}");
    }
}
