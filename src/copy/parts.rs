//! Part layouts for multipart copies, within S3's rules: every part at most 5 GiB, every part but
//! the last at least 5 MiB, at most 10,000 parts — so objects up to 48.8 TiB can be copied.

use crate::limits::{MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIB, MIN_PART_SIZE};

/// One part: its number and the inclusive byte range of the source it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// 1-based part number.
    pub number: i32,
    /// First byte of the range.
    pub first: u64,
    /// Last byte of the range (inclusive).
    pub last: u64,
}

impl Part {
    /// The part's size in bytes.
    pub fn size(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The `x-amz-copy-source-range` value.
    pub fn range(&self) -> String {
        format!("bytes={}-{}", self.first, self.last)
    }
}

/// Why no layout fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Larger than 10,000 parts of 5 GiB.
    #[error("{size} bytes is more than a multipart copy can hold ({MAX_OBJECT_SIZE} bytes)")]
    TooLarge {
        /// The object's size.
        size: u64,
    },
    /// A given layout breaks S3's part rules.
    #[error("part layout not allowed: {0}")]
    InvalidLayout(String),
}

/// Parts of `part_size` bytes (rounded up to whole MiB and grown until 10,000 parts cover the
/// object) for an object of `size` bytes.
pub fn plan_even(size: u64, part_size: u64) -> Result<Vec<Part>, PlanError> {
    if size > MAX_OBJECT_SIZE {
        return Err(PlanError::TooLarge { size });
    }
    if size == 0 {
        return Err(PlanError::InvalidLayout(
            "an empty object has no byte range to copy".into(),
        ));
    }
    let needed = size.div_ceil(MAX_PARTS);
    let part_size = part_size.max(needed).max(MIN_PART_SIZE).div_ceil(MIB) * MIB;
    let part_size = part_size.min(MAX_PART_SIZE);
    Ok((0..size.div_ceil(part_size))
        .map(|index| Part {
            number: (index + 1) as i32,
            first: index * part_size,
            last: ((index + 1) * part_size).min(size) - 1,
        })
        .collect())
}

/// Parts with the given sizes, in order: the source's own layout, so the replica's ETag equals
/// the source's.
pub fn plan_from_sizes(sizes: &[u64]) -> Result<Vec<Part>, PlanError> {
    if sizes.is_empty() || sizes.len() as u64 > MAX_PARTS {
        return Err(PlanError::InvalidLayout(format!(
            "{} parts (1 to {MAX_PARTS} allowed)",
            sizes.len()
        )));
    }
    let mut parts = Vec::with_capacity(sizes.len());
    let mut first = 0;
    for (index, &size) in sizes.iter().enumerate() {
        let is_last = index + 1 == sizes.len();
        if size == 0 || size > MAX_PART_SIZE || (!is_last && size < MIN_PART_SIZE) {
            return Err(PlanError::InvalidLayout(format!(
                "part {} has {size} bytes",
                index + 1
            )));
        }
        parts.push(Part {
            number: (index + 1) as i32,
            first,
            last: first + size - 1,
        });
        first += size;
    }
    Ok(parts)
}

/// The number of parts a multipart ETag (`"<md5>-N"`) says the object was uploaded in.
pub fn multipart_part_count(etag: &str) -> Option<u64> {
    let (_, count) = etag.trim_matches('"').rsplit_once('-')?;
    count.parse().ok().filter(|n| (1..=MAX_PARTS).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::GIB;

    fn covers(parts: &[Part], size: u64) {
        assert_eq!(parts.first().unwrap().first, 0);
        assert_eq!(parts.last().unwrap().last, size - 1);
        for pair in parts.windows(2) {
            assert_eq!(pair[0].last + 1, pair[1].first);
            assert_eq!(pair[0].number + 1, pair[1].number);
        }
        assert!(parts.len() as u64 <= MAX_PARTS);
        for part in &parts[..parts.len() - 1] {
            assert!(part.size() >= MIN_PART_SIZE && part.size() <= MAX_PART_SIZE);
        }
        assert!(parts.last().unwrap().size() <= MAX_PART_SIZE);
    }

    #[test]
    fn splits_into_parts_of_the_requested_size() {
        let parts = plan_even(20 * MIB, 5 * MIB).unwrap();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[3].range(),
            format!("bytes={}-{}", 15 * MIB, 20 * MIB - 1)
        );
        covers(&parts, 20 * MIB);
        let parts = plan_even(20 * MIB + 1, 5 * MIB).unwrap();
        assert_eq!((parts.len(), parts[4].size()), (5, 1));
    }

    #[test]
    fn never_goes_below_5_mib_and_rounds_to_whole_mib() {
        let parts = plan_even(12 * MIB, MIB).unwrap();
        assert_eq!(
            parts.iter().map(Part::size).collect::<Vec<_>>(),
            vec![5 * MIB, 5 * MIB, 2 * MIB]
        );
        let parts = plan_even(100 * MIB, 7 * MIB + 1).unwrap();
        assert_eq!(parts[0].size(), 8 * MIB);
    }

    #[test]
    fn grows_parts_so_that_10000_cover_the_object() {
        let size = 5 * 1024 * GIB; // 5 TiB
        let parts = plan_even(size, 64 * MIB).unwrap();
        assert!(parts.len() as u64 <= MAX_PARTS);
        assert_eq!(parts[0].size(), 525 * MIB); // ceil(5 TiB / 10,000) rounded up to MiB
        covers(&parts, size);
    }

    #[test]
    fn reaches_the_largest_object_and_refuses_one_byte_more() {
        let parts = plan_even(MAX_OBJECT_SIZE, 64 * MIB).unwrap();
        assert_eq!(parts.len() as u64, MAX_PARTS);
        assert!(parts.iter().all(|p| p.size() == MAX_PART_SIZE));
        covers(&parts, MAX_OBJECT_SIZE);
        assert_eq!(MAX_OBJECT_SIZE, 53_687_091_200_000); // 48.8 TiB
        assert_eq!(
            plan_even(MAX_OBJECT_SIZE + 1, 64 * MIB),
            Err(PlanError::TooLarge {
                size: MAX_OBJECT_SIZE + 1
            })
        );
    }

    #[test]
    fn objects_just_over_the_single_copy_limit() {
        let parts = plan_even(MAX_PART_SIZE + 1, MAX_PART_SIZE).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].size(), 1);
        covers(&parts, MAX_PART_SIZE + 1);
    }

    #[test]
    fn keeps_a_source_layout_that_follows_the_rules() {
        let parts = plan_from_sizes(&[8 * MIB, 8 * MIB, 3]).unwrap();
        assert_eq!(
            parts[2].range(),
            format!("bytes={}-{}", 16 * MIB, 16 * MIB + 2)
        );
        covers(&parts, 16 * MIB + 3);
        assert!(plan_from_sizes(&[4 * MIB, 8 * MIB]).is_err());
        assert!(plan_from_sizes(&[MAX_PART_SIZE + 1]).is_err());
        assert!(plan_from_sizes(&[]).is_err());
        assert!(plan_from_sizes(&vec![MIN_PART_SIZE; 10_001]).is_err());
        assert!(plan_from_sizes(&[5 * MIB, 0]).is_err());
    }

    #[test]
    fn reads_the_part_count_of_multipart_etags() {
        assert_eq!(
            multipart_part_count("\"5f363e0e58a95f06cbe9bbc662c5dfb6-14\""),
            Some(14)
        );
        assert_eq!(
            multipart_part_count("5f363e0e58a95f06cbe9bbc662c5dfb6-1"),
            Some(1)
        );
        assert_eq!(
            multipart_part_count("\"b1946ac92492d2347c6235b4d2611184\""),
            None
        );
        assert_eq!(multipart_part_count("\"abc-0\""), None);
        assert_eq!(multipart_part_count("\"abc-10001\""), None);
    }

    #[test]
    fn refuses_to_plan_an_empty_object() {
        assert!(plan_even(0, 5 * MIB).is_err());
    }
}
