//! Parsers for the text formats Vigil reads: they derive named fields from a line, which stays
//! the record.

mod access_log;
mod vpc_flow;

pub use access_log::{check_access_log, parse_access_log, AccessLogError, AccessLogLine};
pub use vpc_flow::{check_vpc_flow, parse_vpc_flow, VpcFlowError, VpcFlowRecord};
