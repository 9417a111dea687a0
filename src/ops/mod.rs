//! Operating the function: the permission doctor, the bucket policy account B attaches, and the
//! setup commands that merge the function's notification and statements into what is there.
//! Built on the copy path and the self-invocation; the entry points call it.

pub mod doctor;
pub mod policy;
pub mod role;
pub mod setup;
