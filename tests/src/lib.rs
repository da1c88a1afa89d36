//! End-to-end tests: a lab of network namespaces with real kernel TCP
//! clients and real HTTP servers. The lab arrives with the dataplane issue.

#![forbid(unsafe_code)]
