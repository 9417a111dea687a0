//! Where the function is entered: the Lambda handler (every payload shape, and the response each
//! invoker expects), S3 Batch Operations jobs, start-up under Lambda, and the command line. The
//! top layer: it may call every other module, and none calls it.

pub mod batch;
pub mod cli;
pub mod handler;
pub mod runtime;
