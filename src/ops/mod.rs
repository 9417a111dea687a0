//! Operating the function: the permission doctor and the bucket policy account B attaches.
//! Built on the copy path and the self-invocation; the entry points call it.

pub mod doctor;
pub mod policy;
