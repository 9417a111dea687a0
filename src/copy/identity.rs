//! The one rule that decides whether a replica is current for its source object, used by the
//! event path (before copying a large object again), by verification (after a copy), and by
//! backfill (from two listings).
//!
//! In order, with the first that applies deciding:
//! 1. different sizes: stale;
//! 2. the source was written after the replica (its `LastModified` is later): stale;
//! 3. the content headers, user metadata or tag count differ (when both heads were read): stale;
//! 4. both carry a checksum of the same algorithm and type (full-object, or composite over the
//!    same number of parts): current if equal, else stale;
//! 5. both ETags are comparable (neither side encrypted with KMS, and the same part layout:
//!    both single-part, or both of the same part count): current if equal, else stale;
//! 6. nothing compares the content: current only where the caller accepts the replica's age as
//!    evidence (backfill, from listings), else stale, and the object is copied again.
//!
//! Rule 2 catches every rewrite, metadata-only ones included, made after the replica. Rules 4
//! and 5 catch a rollback: the version made current again is older than the replica, so its age
//! proves nothing, but its content differs. Rule 6 is the documented limit: without a checksum
//! and with KMS on either side, a listing cannot tell a same-size rollback from the replica.

use std::collections::HashMap;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ChecksumType, ServerSideEncryption};

/// What is known of one object (source or replica): from a head, a listing or an event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Size in bytes.
    pub size: i64,
    /// ETag, quoted or not.
    pub etag: Option<String>,
    /// Whether it is encrypted with a KMS key (its ETag then is no MD5 of its bytes); `None`
    /// when unknown, taken as not.
    pub kms: Option<bool>,
    /// `LastModified` (for an object written in parts: when its upload started).
    pub modified: Option<DateTime>,
    /// Its additional checksum, when its head was read with checksums enabled.
    pub checksum: Option<Checksum>,
    /// Its content headers, user metadata and tag count, when its head was read.
    pub headers: Option<Headers>,
}

/// An S3 additional checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// `CRC64NVME`, `CRC32`, `CRC32C`, `SHA1` or `SHA256`.
    pub algorithm: &'static str,
    /// The base64 value; a composite checksum ends in `-N`.
    pub value: String,
    /// A checksum of the whole object (`FULL_OBJECT`), independent of its part layout.
    pub full_object: bool,
}

/// The headers a copy carries over, compared between source and replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub fields: HeaderFields,
    /// The tag count, when S3 reports it (it does only to a caller allowed to read the tags).
    pub tag_count: Option<i32>,
}

/// The content headers and user metadata of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFields {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<String>,
    pub website_redirect_location: Option<String>,
    pub metadata: HashMap<String, String>,
}

impl Headers {
    /// Whether these headers and `other` differ: in any field, or in a tag count both report.
    fn differ(&self, other: &Headers) -> bool {
        self.fields != other.fields
            || matches!((self.tag_count, other.tag_count), (Some(a), Some(b)) if a != b)
    }
}

/// What showed the replica current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Equal checksums of this algorithm.
    Checksum(&'static str),
    /// Equal, comparable ETags.
    ETag,
    /// Nothing compared the content; the replica was written after the source (backfill only).
    Age,
}

impl Evidence {
    /// How it is named in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Checksum("CRC64NVME") => "checksum CRC64NVME",
            Evidence::Checksum("CRC32") => "checksum CRC32",
            Evidence::Checksum("CRC32C") => "checksum CRC32C",
            Evidence::Checksum("SHA1") => "checksum SHA1",
            Evidence::Checksum(_) => "checksum SHA256",
            Evidence::ETag => "ETag",
            Evidence::Age => "size and age",
        }
    }
}

/// Why a replica is not current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    Size,
    SourceNewer,
    Headers,
    Checksum,
    ETag,
    /// Nothing compares the content, and age is not accepted as evidence.
    NoEvidence,
}

impl Stale {
    /// How it is named in logs and mismatch reports.
    pub fn name(&self) -> &'static str {
        match self {
            Stale::Size => "sizes differ",
            Stale::SourceNewer => "the source was written after the replica",
            Stale::Headers => "content headers, user metadata or tag count differ",
            Stale::Checksum => "checksums differ",
            Stale::ETag => "ETags differ",
            Stale::NoEvidence => "no checksum or comparable ETag shows the content equal",
        }
    }
}

/// Whether the replica's age may stand in for a content comparison (rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeAsEvidence {
    /// From listings: no checksum and no headers are available, and a copy per object on
    /// every run is what the rule must avoid.
    Accepted,
    /// From heads: copy again instead.
    Refused,
}

/// The rule (see the module's documentation).
pub fn judge(source: &Facts, replica: &Facts, age: AgeAsEvidence) -> Result<Evidence, Stale> {
    if source.size != replica.size {
        return Err(Stale::Size);
    }
    if let (Some(written), Some(copied)) = (source.modified, replica.modified)
        && copied < written
    {
        return Err(Stale::SourceNewer);
    }
    if let (Some(a), Some(b)) = (&source.headers, &replica.headers)
        && a.differ(b)
    {
        return Err(Stale::Headers);
    }
    match content(source, replica) {
        Some(result) => result,
        None if age == AgeAsEvidence::Accepted => Ok(Evidence::Age),
        None => Err(Stale::NoEvidence),
    }
}

/// Rules 4 and 5 alone: what the content comparison says, `None` when nothing compares it.
pub fn content(source: &Facts, replica: &Facts) -> Option<Result<Evidence, Stale>> {
    if let (Some(a), Some(b)) = (&source.checksum, &replica.checksum)
        && a.algorithm == b.algorithm
        && a.full_object == b.full_object
        && (a.full_object || part_count(&a.value) == part_count(&b.value))
    {
        return Some(if a.value == b.value {
            Ok(Evidence::Checksum(a.algorithm))
        } else {
            Err(Stale::Checksum)
        });
    }
    let (a, b) = (source.etag.as_deref()?, replica.etag.as_deref()?);
    let (a, b) = (a.trim_matches('"'), b.trim_matches('"'));
    let kms = |facts: &Facts| facts.kms == Some(true);
    if kms(source) || kms(replica) || part_count(a) != part_count(b) {
        return None;
    }
    Some(if a == b {
        Ok(Evidence::ETag)
    } else {
        Err(Stale::ETag)
    })
}

/// The part count a multipart ETag or composite checksum ends with (`-N`); `None` for a
/// single-part one.
fn part_count(value: &str) -> Option<&str> {
    value.trim_matches('"').rsplit_once('-').map(|(_, n)| n)
}

impl Facts {
    /// What a head read with checksums enabled says.
    pub fn from_head(head: &HeadObjectOutput) -> Self {
        Facts {
            size: head.content_length().unwrap_or_default(),
            etag: head.e_tag().map(str::to_string),
            kms: Some(is_kms(head.server_side_encryption())),
            modified: head.last_modified().copied(),
            checksum: checksum(head),
            headers: Some(Headers {
                fields: HeaderFields {
                    content_type: head.content_type().map(str::to_string),
                    cache_control: head.cache_control().map(str::to_string),
                    content_disposition: head.content_disposition().map(str::to_string),
                    content_encoding: head.content_encoding().map(str::to_string),
                    content_language: head.content_language().map(str::to_string),
                    expires: valid_expires(head),
                    website_redirect_location: head.website_redirect_location().map(str::to_string),
                    metadata: head.metadata().cloned().unwrap_or_default(),
                },
                tag_count: head.tag_count(),
            }),
        }
    }
}

/// The `Expires` header when it is a valid date: an invalid one is stored by S3 but refused on
/// writes, so a replica never carries it and it must not make the replica look stale.
#[allow(deprecated)]
fn valid_expires(head: &HeadObjectOutput) -> Option<String> {
    head.expires().map(|date| date.secs().to_string())
}

/// Whether an encryption is with a KMS key (SSE-KMS or DSSE-KMS).
pub fn is_kms(encryption: Option<&ServerSideEncryption>) -> bool {
    matches!(
        encryption,
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    )
}

/// The checksum a head carries (read with `ChecksumMode=ENABLED`).
fn checksum(head: &HeadObjectOutput) -> Option<Checksum> {
    Checksum::from_fields(
        [
            head.checksum_crc64_nvme(),
            head.checksum_crc32(),
            head.checksum_crc32_c(),
            head.checksum_sha1(),
            head.checksum_sha256(),
        ],
        head.checksum_type(),
    )
}

impl Checksum {
    /// The checksum among a response's fields, given in the order CRC64NVME, CRC32, CRC32C,
    /// SHA1, SHA256. One without a stated type is a full-object one unless its value names a
    /// part count.
    pub fn from_fields(values: [Option<&str>; 5], kind: Option<&ChecksumType>) -> Option<Self> {
        const ALGORITHMS: [&str; 5] = ["CRC64NVME", "CRC32", "CRC32C", "SHA1", "SHA256"];
        let (algorithm, value) = ALGORITHMS
            .into_iter()
            .zip(values)
            .find_map(|(algorithm, value)| value.map(|v| (algorithm, v)))?;
        let full_object = match kind {
            Some(ChecksumType::FullObject) => true,
            Some(ChecksumType::Composite) => false,
            _ => part_count(value).is_none(),
        };
        Some(Checksum {
            algorithm,
            value: value.to_string(),
            full_object,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(size: i64, etag: &str, modified: i64) -> Facts {
        Facts {
            size,
            etag: Some(format!("\"{etag}\"")),
            kms: Some(false),
            modified: Some(DateTime::from_secs(modified)),
            ..Facts::default()
        }
    }

    fn with_checksum(mut facts: Facts, value: &str, full_object: bool) -> Facts {
        facts.checksum = Some(Checksum {
            algorithm: "CRC64NVME",
            value: value.into(),
            full_object,
        });
        facts
    }

    const ACCEPTED: AgeAsEvidence = AgeAsEvidence::Accepted;
    const REFUSED: AgeAsEvidence = AgeAsEvidence::Refused;

    #[test]
    fn equal_md5_etags_show_the_replica_current() {
        let source = facts(5, "abc", 10);
        assert_eq!(
            judge(&source, &facts(5, "abc", 11), REFUSED),
            Ok(Evidence::ETag)
        );
    }

    #[test]
    fn a_size_change_or_a_later_write_makes_it_stale_whatever_the_etags() {
        let source = facts(5, "abc-2", 10);
        assert_eq!(
            judge(&source, &facts(6, "abc-2", 20), ACCEPTED),
            Err(Stale::Size)
        );
        // A metadata-only rewrite keeps a multipart ETag, but not the write time.
        assert_eq!(
            judge(&source, &facts(5, "abc-2", 9), ACCEPTED),
            Err(Stale::SourceNewer)
        );
    }

    #[test]
    fn a_same_size_rollback_is_stale_although_the_replica_is_newer() {
        // The version made current again is older than the replica: only content tells.
        let rolled_back = facts(5, "old", 10);
        let replica = facts(5, "new", 30);
        assert_eq!(judge(&rolled_back, &replica, ACCEPTED), Err(Stale::ETag));
        let rolled_back = with_checksum(facts(5, "k1", 10), "AAA=", true);
        let mut replica = with_checksum(facts(5, "k2", 30), "BBB=", true);
        replica.kms = Some(true);
        assert_eq!(
            judge(&rolled_back, &replica, ACCEPTED),
            Err(Stale::Checksum)
        );
    }

    #[test]
    fn kms_etags_are_not_compared_checksums_are() {
        let mut source = facts(5, "random1", 10);
        source.kms = Some(true);
        let replica = facts(5, "md5", 11);
        assert_eq!(content(&source, &replica), None);
        assert_eq!(judge(&source, &replica, ACCEPTED), Ok(Evidence::Age));
        assert_eq!(judge(&source, &replica, REFUSED), Err(Stale::NoEvidence));
        let (source, replica) = (
            with_checksum(source, "XYZ=", true),
            with_checksum(replica, "XYZ=", true),
        );
        assert_eq!(
            judge(&source, &replica, REFUSED),
            Ok(Evidence::Checksum("CRC64NVME"))
        );
    }

    #[test]
    fn a_full_object_checksum_ignores_the_layout_a_composite_one_does_not() {
        let source = with_checksum(facts(5, "abc", 10), "XYZ=", true);
        let replica = with_checksum(facts(5, "def-3", 11), "XYZ=", true);
        assert_eq!(
            judge(&source, &replica, REFUSED),
            Ok(Evidence::Checksum("CRC64NVME"))
        );
        let source = with_checksum(facts(5, "abc-2", 10), "XYZ=-2", false);
        let replica = with_checksum(facts(5, "def-3", 11), "UVW=-3", false);
        assert_eq!(content(&source, &replica), None);
    }

    #[test]
    fn etags_of_different_layouts_are_not_compared() {
        let source = facts(5, "abc", 10);
        assert_eq!(content(&source, &facts(5, "def-2", 11)), None);
        assert_eq!(
            content(&facts(5, "abc-2", 10), &facts(5, "def-2", 11)),
            Some(Err(Stale::ETag))
        );
    }

    #[test]
    fn different_headers_make_it_stale() {
        let mut source = facts(5, "abc", 10);
        let mut replica = facts(5, "abc", 11);
        source.headers = Some(Headers {
            fields: HeaderFields {
                content_type: Some("text/csv".into()),
                ..HeaderFields::default()
            },
            tag_count: Some(1),
        });
        replica.headers = Some(Headers::default());
        assert_eq!(judge(&source, &replica, REFUSED), Err(Stale::Headers));
        // A tag count the replica's head does not report (no permission to read its tags) is
        // not compared; one it reports is.
        source.headers.as_mut().unwrap().fields = HeaderFields::default();
        assert!(judge(&source, &replica, REFUSED).is_ok());
        replica.headers.as_mut().unwrap().tag_count = Some(2);
        assert_eq!(judge(&source, &replica, REFUSED), Err(Stale::Headers));
    }
}
