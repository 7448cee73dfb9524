//! End-to-end tests: the real function binaries behind the emulated API Gateway, on moto,
//! driven over HTTP. One binary so the stack starts once; one module per domain.

mod catalog;
mod support;
