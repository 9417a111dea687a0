//! S3's size limits for objects and multipart uploads, which the configuration and the part
//! planning both obey.

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;
/// The smallest part S3 accepts, except the last.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part S3 accepts, and the largest object one `CopyObject` can copy.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// The most parts one upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// The largest object a multipart copy can produce: 10,000 parts of 5 GiB.
pub const MAX_OBJECT_SIZE: u64 = MAX_PARTS * MAX_PART_SIZE;
