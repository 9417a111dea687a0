//! Operating the function: the permission doctor, the bucket policy account B attaches, the
//! setup commands that merge the function's notification and statements into what is there, and
//! the clean-up of multipart uploads left open in B.
//! Built on the copy path and the self-invocation; the entry points call it.

pub mod doctor;
pub mod policy;
pub mod role;
pub mod setup;
pub mod uploads;
